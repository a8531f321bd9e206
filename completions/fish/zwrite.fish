complete --keep-order --exclusive --command zwrite --arguments "(COMPLETE=fish zwrite -- (commandline --current-process --tokenize --cut-at-cursor) (commandline --current-token))"
