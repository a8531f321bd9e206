# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_zcommit_global_optspecs
    string join \n runtime= discard store= t/tag= j/jobs= link-mode= whiteouts no-cache reproducible v/verbose q/quiet h/help V/version
end

function __fish_zcommit_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_zcommit_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_zcommit_using_subcommand
    set -l cmd (__fish_zcommit_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c zcommit -n "__fish_zcommit_needs_command" -l runtime -d 'Commit the changes of the editable runtime NAME (`zmount run --edit --name NAME`) as a layer over its base: new and changed files, deletions as whiteouts, replaced dirs opaque. The runtime then continues on its base plus the new layer with no changes (or is removed with --discard). A runtime without changes makes no layer: zcommit says so and exits 0 with nothing on standard output; --tag then points the tag at the top layer of the runtime\'s stack (what it shows), and fails if the stack is empty' -r
complete -c zcommit -n "__fish_zcommit_needs_command" -l store -d 'The store [default: $ZKIT_STORE, $XDG_DATA_HOME/zkit or ~/.local/share/zkit]' -r -F
complete -c zcommit -n "__fish_zcommit_needs_command" -s t -l tag -d 'Point tag NAME (like app/1.0) at the new layer, atomically' -r
complete -c zcommit -n "__fish_zcommit_needs_command" -s j -l jobs -d 'Threads for walking, hashing and linking [default: 4 per CPU: most of a commit is waiting for the file system]' -r
complete -c zcommit -n "__fish_zcommit_needs_command" -l link-mode -d 'How files enter the store: clone-or-copy (reflink, else copy), reflink (fail unless every file can be reflinked) or copy. Hard links are refused: they would let a later edit of a file change the store' -r -f -a "clone-or-copy\t'Reflink, else copy: the store never shares an inode with your file'
reflink\t'Reflinks only: fail unless the store\'s file system can share every file\'s blocks'
copy\t'Copies only: the store gets its own blocks (the kernel may still share them)'"
complete -c zcommit -n "__fish_zcommit_needs_command" -l discard -d 'With --runtime: remove the runtime after committing it'
complete -c zcommit -n "__fish_zcommit_needs_command" -l whiteouts -d 'Read .wh.NAME as "NAME is deleted" (a whiteout) and .wh..wh..opq as "this directory hides the lower layers\' one" (opaque), as in an editable view\'s scratch directory'
complete -c zcommit -n "__fish_zcommit_needs_command" -l no-cache -d 'Read every file again, ignoring and not updating the commit cache'
complete -c zcommit -n "__fish_zcommit_needs_command" -l reproducible -d 'Record one fixed modification time for every entry ($SOURCE_DATE_EPOCH, else 1970-01-01 00:00:01), so the same content gives the same digest wherever it is committed. Without it, a set $SOURCE_DATE_EPOCH clamps later times to it'
complete -c zcommit -n "__fish_zcommit_needs_command" -s v -l verbose -d 'Print what was done on standard error (files, hashed, new blobs, bytes)'
complete -c zcommit -n "__fish_zcommit_needs_command" -s q -l quiet -d 'No progress bar and no warnings; errors are still printed'
complete -c zcommit -n "__fish_zcommit_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c zcommit -n "__fish_zcommit_needs_command" -s V -l version -d 'Print version'
complete -c zcommit -n "__fish_zcommit_needs_command" -a "ls" -d 'List a layer\'s entries, ls -l style: kind and mode, size, blob digest, path (-> target); FIFOs show as `p`, devices as `c`/`b` with their numbers for a size, whiteouts as `w---------`; opaque dirs end in `(opaque)`. Names are quoted as `ls` quotes them on a terminal (\'two words\', \'new\'$\'\\n\'\'line\'), so every entry is one line'
complete -c zcommit -n "__fish_zcommit_needs_command" -a "tags" -d 'List tags and the layers they point at; a damaged tag is named on stderr (exit 1) and the others are still listed'
complete -c zcommit -n "__fish_zcommit_needs_command" -a "tag" -d 'Point tag NAME at LAYER, atomically'
complete -c zcommit -n "__fish_zcommit_needs_command" -a "untag" -d 'Remove tags, each atomically (the layers stay until `zcommit gc`). A NAME with `*` or `?` is a pattern, matched one `/`-separated part at a time (`app/*`, quoted from the shell); exit 1 if a NAME names no tag'
complete -c zcommit -n "__fish_zcommit_needs_command" -a "layers" -d 'List every layer\'s digest'
complete -c zcommit -n "__fish_zcommit_needs_command" -a "diff" -d 'What changed between two stacks A and B (each LAYER or LAYER,LAYER,... bottom first), or what `zcommit --runtime NAME` would record: a line per path, `A` added, `D` deleted, `T` kind changed, `M` content, mode, link target or device changed (with -v also `m`: only the time). Manifests are compared, never file contents'
complete -c zcommit -n "__fish_zcommit_needs_command" -a "gc" -d 'Remove the layers, blobs, commit caches and per-layer data that no tag, no runtime, no live view (`zmount run`, `zmount mount`) and no --keep reaches; a summary of what was freed on stderr. Safe beside commits, checkouts, mounts and other gcs: they hold the store\'s lock shared, the sweep exclusively, and what appears after gc starts stays'
complete -c zcommit -n "__fish_zcommit_needs_command" -a "du" -d 'What layers cost: entries, bytes of the distinct blobs each names, bytes unique to it (no other layer in the store names them: removing it frees them) and shared. Without LAYER: every tag, then the store\'s blobs, layers and what `zcommit gc` would free'
complete -c zcommit -n "__fish_zcommit_needs_command" -a "verify" -d 'Rehash every blob, check every layer and tag; exit 1 naming each damaged object'
complete -c zcommit -n "__fish_zcommit_needs_command" -a "runtimes" -d 'List editable runtimes: name, `changed` or `clean`, `in-use` or `idle`, base layers'
complete -c zcommit -n "__fish_zcommit_needs_command" -a "discard" -d 'Remove an editable runtime and its uncommitted changes (refused while in use)'
complete -c zcommit -n "__fish_zcommit_needs_command" -a "checkout" -d 'Materialise a stack of layers (bottom first; later layers win, whiteouts and opaque dirs hide lower paths) into DEST, which must not exist or be empty'
complete -c zcommit -n "__fish_zcommit_needs_command" -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c zcommit -n "__fish_zcommit_using_subcommand ls" -l store -d 'The store [default: $ZKIT_STORE, $XDG_DATA_HOME/zkit or ~/.local/share/zkit]' -r -F
complete -c zcommit -n "__fish_zcommit_using_subcommand ls" -s j -l jobs -d 'Threads for walking, hashing and linking [default: 4 per CPU: most of a commit is waiting for the file system]' -r
complete -c zcommit -n "__fish_zcommit_using_subcommand ls" -s z -l null -d 'End each entry with a NUL instead of a newline, and print names as their bytes, unquoted (for xargs -0, read -d \'\')'
complete -c zcommit -n "__fish_zcommit_using_subcommand ls" -s q -l quiet -d 'No progress bar and no warnings; errors are still printed'
complete -c zcommit -n "__fish_zcommit_using_subcommand ls" -s h -l help -d 'Print help'
complete -c zcommit -n "__fish_zcommit_using_subcommand tags" -l store -d 'The store [default: $ZKIT_STORE, $XDG_DATA_HOME/zkit or ~/.local/share/zkit]' -r -F
complete -c zcommit -n "__fish_zcommit_using_subcommand tags" -s j -l jobs -d 'Threads for walking, hashing and linking [default: 4 per CPU: most of a commit is waiting for the file system]' -r
complete -c zcommit -n "__fish_zcommit_using_subcommand tags" -s q -l quiet -d 'No progress bar and no warnings; errors are still printed'
complete -c zcommit -n "__fish_zcommit_using_subcommand tags" -s h -l help -d 'Print help'
complete -c zcommit -n "__fish_zcommit_using_subcommand tag" -l store -d 'The store [default: $ZKIT_STORE, $XDG_DATA_HOME/zkit or ~/.local/share/zkit]' -r -F
complete -c zcommit -n "__fish_zcommit_using_subcommand tag" -s j -l jobs -d 'Threads for walking, hashing and linking [default: 4 per CPU: most of a commit is waiting for the file system]' -r
complete -c zcommit -n "__fish_zcommit_using_subcommand tag" -s q -l quiet -d 'No progress bar and no warnings; errors are still printed'
complete -c zcommit -n "__fish_zcommit_using_subcommand tag" -s h -l help -d 'Print help'
complete -c zcommit -n "__fish_zcommit_using_subcommand untag" -l store -d 'The store [default: $ZKIT_STORE, $XDG_DATA_HOME/zkit or ~/.local/share/zkit]' -r -F
complete -c zcommit -n "__fish_zcommit_using_subcommand untag" -s j -l jobs -d 'Threads for walking, hashing and linking [default: 4 per CPU: most of a commit is waiting for the file system]' -r
complete -c zcommit -n "__fish_zcommit_using_subcommand untag" -s q -l quiet -d 'No progress bar and no warnings; errors are still printed'
complete -c zcommit -n "__fish_zcommit_using_subcommand untag" -s h -l help -d 'Print help'
complete -c zcommit -n "__fish_zcommit_using_subcommand layers" -l store -d 'The store [default: $ZKIT_STORE, $XDG_DATA_HOME/zkit or ~/.local/share/zkit]' -r -F
complete -c zcommit -n "__fish_zcommit_using_subcommand layers" -s j -l jobs -d 'Threads for walking, hashing and linking [default: 4 per CPU: most of a commit is waiting for the file system]' -r
complete -c zcommit -n "__fish_zcommit_using_subcommand layers" -s q -l quiet -d 'No progress bar and no warnings; errors are still printed'
complete -c zcommit -n "__fish_zcommit_using_subcommand layers" -s h -l help -d 'Print help'
complete -c zcommit -n "__fish_zcommit_using_subcommand diff" -l runtime -d 'Compare the editable runtime NAME with its base: what `zcommit --runtime NAME` would record (a scratch file counts as changed unless its size and time are the lower one\'s)' -r
complete -c zcommit -n "__fish_zcommit_using_subcommand diff" -l store -d 'The store [default: $ZKIT_STORE, $XDG_DATA_HOME/zkit or ~/.local/share/zkit]' -r -F
complete -c zcommit -n "__fish_zcommit_using_subcommand diff" -s j -l jobs -d 'Threads for walking, hashing and linking [default: 4 per CPU: most of a commit is waiting for the file system]' -r
complete -c zcommit -n "__fish_zcommit_using_subcommand diff" -s v -l verbose -d 'Also list paths whose only change is their modification time (`m`)'
complete -c zcommit -n "__fish_zcommit_using_subcommand diff" -l json -d 'A JSON array of {"status", "path"} on standard output'
complete -c zcommit -n "__fish_zcommit_using_subcommand diff" -s z -l null -d 'End each record with a NUL instead of a newline, and print paths as their bytes'
complete -c zcommit -n "__fish_zcommit_using_subcommand diff" -s q -l quiet -d 'No progress bar and no warnings; errors are still printed'
complete -c zcommit -n "__fish_zcommit_using_subcommand diff" -s h -l help -d 'Print help'
complete -c zcommit -n "__fish_zcommit_using_subcommand gc" -l keep -d 'Keep this layer (tag, digest or unique prefix) and what it names, as if tagged' -r
complete -c zcommit -n "__fish_zcommit_using_subcommand gc" -l store -d 'The store [default: $ZKIT_STORE, $XDG_DATA_HOME/zkit or ~/.local/share/zkit]' -r -F
complete -c zcommit -n "__fish_zcommit_using_subcommand gc" -s j -l jobs -d 'Threads for walking, hashing and linking [default: 4 per CPU: most of a commit is waiting for the file system]' -r
complete -c zcommit -n "__fish_zcommit_using_subcommand gc" -s n -l dry-run -d 'List what would be removed (kind, bytes, path below the store), remove nothing'
complete -c zcommit -n "__fish_zcommit_using_subcommand gc" -l json -d 'One JSON object on standard output: what went (or would go) and the totals'
complete -c zcommit -n "__fish_zcommit_using_subcommand gc" -s q -l quiet -d 'No progress bar and no warnings; errors are still printed'
complete -c zcommit -n "__fish_zcommit_using_subcommand gc" -s h -l help -d 'Print help'
complete -c zcommit -n "__fish_zcommit_using_subcommand du" -l store -d 'The store [default: $ZKIT_STORE, $XDG_DATA_HOME/zkit or ~/.local/share/zkit]' -r -F
complete -c zcommit -n "__fish_zcommit_using_subcommand du" -s j -l jobs -d 'Threads for walking, hashing and linking [default: 4 per CPU: most of a commit is waiting for the file system]' -r
complete -c zcommit -n "__fish_zcommit_using_subcommand du" -l json -d 'One JSON object on standard output: {"layers": [...], "store": {...}}'
complete -c zcommit -n "__fish_zcommit_using_subcommand du" -s q -l quiet -d 'No progress bar and no warnings; errors are still printed'
complete -c zcommit -n "__fish_zcommit_using_subcommand du" -s h -l help -d 'Print help'
complete -c zcommit -n "__fish_zcommit_using_subcommand verify" -l store -d 'The store [default: $ZKIT_STORE, $XDG_DATA_HOME/zkit or ~/.local/share/zkit]' -r -F
complete -c zcommit -n "__fish_zcommit_using_subcommand verify" -s j -l jobs -d 'Threads for walking, hashing and linking [default: 4 per CPU: most of a commit is waiting for the file system]' -r
complete -c zcommit -n "__fish_zcommit_using_subcommand verify" -l repair -d 'Remove damaged blobs and layers (content that does not hash to its name), so that no reader is ever given them; committing or importing the same content again restores them. Exit status is still 1 when anything was damaged'
complete -c zcommit -n "__fish_zcommit_using_subcommand verify" -s q -l quiet -d 'No progress bar and no warnings; errors are still printed'
complete -c zcommit -n "__fish_zcommit_using_subcommand verify" -s h -l help -d 'Print help'
complete -c zcommit -n "__fish_zcommit_using_subcommand runtimes" -l store -d 'The store [default: $ZKIT_STORE, $XDG_DATA_HOME/zkit or ~/.local/share/zkit]' -r -F
complete -c zcommit -n "__fish_zcommit_using_subcommand runtimes" -s j -l jobs -d 'Threads for walking, hashing and linking [default: 4 per CPU: most of a commit is waiting for the file system]' -r
complete -c zcommit -n "__fish_zcommit_using_subcommand runtimes" -s q -l quiet -d 'No progress bar and no warnings; errors are still printed'
complete -c zcommit -n "__fish_zcommit_using_subcommand runtimes" -s h -l help -d 'Print help'
complete -c zcommit -n "__fish_zcommit_using_subcommand discard" -l store -d 'The store [default: $ZKIT_STORE, $XDG_DATA_HOME/zkit or ~/.local/share/zkit]' -r -F
complete -c zcommit -n "__fish_zcommit_using_subcommand discard" -s j -l jobs -d 'Threads for walking, hashing and linking [default: 4 per CPU: most of a commit is waiting for the file system]' -r
complete -c zcommit -n "__fish_zcommit_using_subcommand discard" -s q -l quiet -d 'No progress bar and no warnings; errors are still printed'
complete -c zcommit -n "__fish_zcommit_using_subcommand discard" -s h -l help -d 'Print help'
complete -c zcommit -n "__fish_zcommit_using_subcommand checkout" -l link-mode -d 'How files come out of the store: clone-or-copy never shares the store\'s inodes; hardlink (or auto) does, with the store\'s read-only mode, and an edit through such a link damages the store' -r -f -a "auto\t'Hard link, else reflink, else copy, decided per file'
hardlink\t'Hard links only: the destination shares the source\'s inode'
reflink\t'Reflinks only: a new inode sharing data blocks copy-on-write'
copy\t'Copies only: a new inode with its own blocks (the kernel may still share them)'
clone-or-copy\t'Reflink, else copy: never shares an inode, safe when the destination will be edited'"
complete -c zcommit -n "__fish_zcommit_using_subcommand checkout" -l store -d 'The store [default: $ZKIT_STORE, $XDG_DATA_HOME/zkit or ~/.local/share/zkit]' -r -F
complete -c zcommit -n "__fish_zcommit_using_subcommand checkout" -s j -l jobs -d 'Threads for walking, hashing and linking [default: 4 per CPU: most of a commit is waiting for the file system]' -r
complete -c zcommit -n "__fish_zcommit_using_subcommand checkout" -l verify -d 'Hash every file checked out against its digest. Copies are always checked (they are read anyway); this also reads the reflinked and hard-linked ones'
complete -c zcommit -n "__fish_zcommit_using_subcommand checkout" -s q -l quiet -d 'No progress bar and no warnings; errors are still printed'
complete -c zcommit -n "__fish_zcommit_using_subcommand checkout" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c zcommit -n "__fish_zcommit_using_subcommand help; and not __fish_seen_subcommand_from ls tags tag untag layers diff gc du verify runtimes discard checkout help" -f -a "ls" -d 'List a layer\'s entries, ls -l style: kind and mode, size, blob digest, path (-> target); FIFOs show as `p`, devices as `c`/`b` with their numbers for a size, whiteouts as `w---------`; opaque dirs end in `(opaque)`. Names are quoted as `ls` quotes them on a terminal (\'two words\', \'new\'$\'\\n\'\'line\'), so every entry is one line'
complete -c zcommit -n "__fish_zcommit_using_subcommand help; and not __fish_seen_subcommand_from ls tags tag untag layers diff gc du verify runtimes discard checkout help" -f -a "tags" -d 'List tags and the layers they point at; a damaged tag is named on stderr (exit 1) and the others are still listed'
complete -c zcommit -n "__fish_zcommit_using_subcommand help; and not __fish_seen_subcommand_from ls tags tag untag layers diff gc du verify runtimes discard checkout help" -f -a "tag" -d 'Point tag NAME at LAYER, atomically'
complete -c zcommit -n "__fish_zcommit_using_subcommand help; and not __fish_seen_subcommand_from ls tags tag untag layers diff gc du verify runtimes discard checkout help" -f -a "untag" -d 'Remove tags, each atomically (the layers stay until `zcommit gc`). A NAME with `*` or `?` is a pattern, matched one `/`-separated part at a time (`app/*`, quoted from the shell); exit 1 if a NAME names no tag'
complete -c zcommit -n "__fish_zcommit_using_subcommand help; and not __fish_seen_subcommand_from ls tags tag untag layers diff gc du verify runtimes discard checkout help" -f -a "layers" -d 'List every layer\'s digest'
complete -c zcommit -n "__fish_zcommit_using_subcommand help; and not __fish_seen_subcommand_from ls tags tag untag layers diff gc du verify runtimes discard checkout help" -f -a "diff" -d 'What changed between two stacks A and B (each LAYER or LAYER,LAYER,... bottom first), or what `zcommit --runtime NAME` would record: a line per path, `A` added, `D` deleted, `T` kind changed, `M` content, mode, link target or device changed (with -v also `m`: only the time). Manifests are compared, never file contents'
complete -c zcommit -n "__fish_zcommit_using_subcommand help; and not __fish_seen_subcommand_from ls tags tag untag layers diff gc du verify runtimes discard checkout help" -f -a "gc" -d 'Remove the layers, blobs, commit caches and per-layer data that no tag, no runtime, no live view (`zmount run`, `zmount mount`) and no --keep reaches; a summary of what was freed on stderr. Safe beside commits, checkouts, mounts and other gcs: they hold the store\'s lock shared, the sweep exclusively, and what appears after gc starts stays'
complete -c zcommit -n "__fish_zcommit_using_subcommand help; and not __fish_seen_subcommand_from ls tags tag untag layers diff gc du verify runtimes discard checkout help" -f -a "du" -d 'What layers cost: entries, bytes of the distinct blobs each names, bytes unique to it (no other layer in the store names them: removing it frees them) and shared. Without LAYER: every tag, then the store\'s blobs, layers and what `zcommit gc` would free'
complete -c zcommit -n "__fish_zcommit_using_subcommand help; and not __fish_seen_subcommand_from ls tags tag untag layers diff gc du verify runtimes discard checkout help" -f -a "verify" -d 'Rehash every blob, check every layer and tag; exit 1 naming each damaged object'
complete -c zcommit -n "__fish_zcommit_using_subcommand help; and not __fish_seen_subcommand_from ls tags tag untag layers diff gc du verify runtimes discard checkout help" -f -a "runtimes" -d 'List editable runtimes: name, `changed` or `clean`, `in-use` or `idle`, base layers'
complete -c zcommit -n "__fish_zcommit_using_subcommand help; and not __fish_seen_subcommand_from ls tags tag untag layers diff gc du verify runtimes discard checkout help" -f -a "discard" -d 'Remove an editable runtime and its uncommitted changes (refused while in use)'
complete -c zcommit -n "__fish_zcommit_using_subcommand help; and not __fish_seen_subcommand_from ls tags tag untag layers diff gc du verify runtimes discard checkout help" -f -a "checkout" -d 'Materialise a stack of layers (bottom first; later layers win, whiteouts and opaque dirs hide lower paths) into DEST, which must not exist or be empty'
complete -c zcommit -n "__fish_zcommit_using_subcommand help; and not __fish_seen_subcommand_from ls tags tag untag layers diff gc du verify runtimes discard checkout help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
