complete --keep-order --exclusive --command zcommit --arguments "(COMPLETE=fish zcommit -- (commandline --current-process --tokenize --cut-at-cursor) (commandline --current-token))"
