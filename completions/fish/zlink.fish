complete -c zlink -s m -l mode -d 'Which tiers may be used' -r -f -a "auto\t'Hard link, else reflink, else copy, decided per file'
hardlink\t'Hard links only: the destination shares the source\'s inode'
reflink\t'Reflinks only: a new inode sharing data blocks copy-on-write'
copy\t'Copies only: a new inode with its own blocks (the kernel may still share them)'
clone-or-copy\t'Reflink, else copy: never shares an inode, safe when the destination will be edited'"
complete -c zlink -s j -l jobs -d 'Worker threads for -r [default: all CPUs]' -r
complete -c zlink -s r -l recursive -d 'Mirror directory trees: dirs recreated, symlinks recreated, files linked in parallel'
complete -c zlink -s f -l force -d 'Replace an existing, different DEST atomically instead of failing'
complete -c zlink -s T -l no-target-directory -d 'Treat DEST as the name to create even when it is a directory (re-runs of -r stay idempotent instead of nesting SOURCE inside DEST)'
complete -c zlink -s v -l verbose -d 'Print each file with the tier that served it, on stderr'
complete -c zlink -s q -l quiet -d 'No summary line and no progress; errors are still printed'
complete -c zlink -l json -d 'Print the summary as one JSON object on stdout'
complete -c zlink -s h -l help -d 'Print help (see more with \'--help\')'
complete -c zlink -s V -l version -d 'Print version'
