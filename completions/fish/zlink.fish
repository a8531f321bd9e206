complete --keep-order --exclusive --command zlink --arguments "(COMPLETE=fish zlink -- (commandline --current-process --tokenize --cut-at-cursor) (commandline --current-token))"
