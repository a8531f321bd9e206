complete --keep-order --exclusive --command zmount --arguments "(COMPLETE=fish zmount -- (commandline --current-process --tokenize --cut-at-cursor) (commandline --current-token))"
