complete -c zwrite -l from -d 'Read the new content from INPUT instead of standard input' -r -F
complete -c zwrite -s f -d 'The old short form of --from: still accepted, with a warning (-f means --force in the other tools)' -r -F
complete -c zwrite -s c -l create-mode -d 'Mode (octal) of FILE if it has to be created [default: 0666 less the umask]' -r
complete -c zwrite -s a -l append -d 'Append: keep the old content and add the input after it, still atomically'
complete -c zwrite -l truncate -d 'Replace the whole content (the default; accepted for zeugl compatibility)'
complete -c zwrite -s t -d 'The old short form of --truncate: still accepted, with a warning (-t means --tag in zcommit)'
complete -c zwrite -s e -l existing -d 'Fail if FILE does not exist instead of creating it'
complete -c zwrite -s i -l immutable -d 'Lift FILE\'s immutable or append-only flag for the replacement and set it again after'
complete -c zwrite -s n -l no-wait -d 'With -a or -i: fail at once if another zwrite holds FILE\'s lock instead of waiting'
complete -c zwrite -s u -l if-changed -d 'Leave FILE (and its mtime) untouched when the new content is identical'
complete -c zwrite -l no-sync -d 'Skip the fsyncs: still atomic, but not durable across a power cut'
complete -c zwrite -l allow-metadata-loss -d 'Replace FILE even if its owner, mode, ACL or xattrs cannot be kept (warns about each; the mode is never widened). Without it such a loss fails and FILE is left as it was'
complete -c zwrite -l in-place -d 'Write into FILE itself instead of replacing it, for a FILE that cannot be replaced (a bind mount, a directory you cannot write). NOT atomic: readers may see it half-written, and a crash or I/O error mid-write leaves old and new mixed (exit 5). Keeps the inode, so hard links see the new content'
complete -c zwrite -s v -l verbose -d 'Say what was done on standard error'
complete -c zwrite -s q -l quiet -d 'No warnings (e.g. about an owner --allow-metadata-loss did not keep); errors are still printed'
complete -c zwrite -s h -l help -d 'Print help (see more with \'--help\')'
complete -c zwrite -s V -l version -d 'Print version'
