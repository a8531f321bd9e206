# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_zmount_global_optspecs
    string join \n dir= log-level= h/help V/version
end

function __fish_zmount_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_zmount_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_zmount_using_subcommand
    set -l cmd (__fish_zmount_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c zmount -n "__fish_zmount_needs_command" -l dir -d 'Directory for the socket, log and default mount point [env: ZMOUNT_DIR]' -r -F
complete -c zmount -n "__fish_zmount_needs_command" -l log-level -d 'Log level or filter (error, warn, info, debug, trace) [env: ZMOUNT_LOG]' -r
complete -c zmount -n "__fish_zmount_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c zmount -n "__fish_zmount_needs_command" -s V -l version -d 'Print version'
complete -c zmount -n "__fish_zmount_needs_command" -f -a "run" -d 'Run CMD with the stack of LAYERs visible to it and all its descendants'
complete -c zmount -n "__fish_zmount_needs_command" -f -a "serve" -d 'Run the daemon: one routed FUSE mount and the control socket'
complete -c zmount -n "__fish_zmount_needs_command" -f -a "mount" -d 'Mount one stack at MOUNTPOINT, without routing (fastest)'
complete -c zmount -n "__fish_zmount_needs_command" -f -a "umount" -d 'Unmount a mount made by `zmount mount`'
complete -c zmount -n "__fish_zmount_needs_command" -f -a "status" -d 'Show the daemon\'s mount point, views, cache figures and health'
complete -c zmount -n "__fish_zmount_needs_command" -f -a "stop" -d 'Stop the daemon and unmount its mount point (refused while views are in use)'
complete -c zmount -n "__fish_zmount_needs_command" -f -a "register" -d 'Plumbing: show LAYERs to an existing process tree (yours) rooted at PID'
complete -c zmount -n "__fish_zmount_needs_command" -f -a "unregister" -d 'Plumbing: remove the view registered for PID'
complete -c zmount -n "__fish_zmount_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c zmount -n "__fish_zmount_using_subcommand run" -l store -d 'Store directory [default: $ZKIT_STORE, $XDG_DATA_HOME/zkit, ~/.local/share/zkit]' -r -F
complete -c zmount -n "__fish_zmount_using_subcommand run" -l mountpoint -d 'Mount point for a daemon started on demand [default: DIR/mnt]' -r -F
complete -c zmount -n "__fish_zmount_using_subcommand run" -l name -d 'With --edit: the runtime to create, or to resume (then LAYERs may be left out) [default: a fresh name, printed; removed again if the run changes nothing]' -r
complete -c zmount -n "__fish_zmount_using_subcommand run" -l dir -d 'Directory for the socket, log and default mount point [env: ZMOUNT_DIR]' -r -F
complete -c zmount -n "__fish_zmount_using_subcommand run" -l log-level -d 'Log level or filter (error, warn, info, debug, trace) [env: ZMOUNT_LOG]' -r
complete -c zmount -n "__fish_zmount_using_subcommand run" -l edit -d 'Writable view: changes go to a runtime\'s scratch dir in the store, which outlives the run; `zcommit --runtime NAME` makes them a layer'
complete -c zmount -n "__fish_zmount_using_subcommand run" -l rebase -d 'With --name: if the runtime exists on other layers, move its changes (scratch and the layers committed from it) onto LAYERs instead of refusing; its own copies of files win over the new layers\' (refused while a mount uses it)'
complete -c zmount -n "__fish_zmount_using_subcommand run" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c zmount -n "__fish_zmount_using_subcommand serve" -l mountpoint -d 'Mount point [default: DIR/mnt, created if missing]' -r -F
complete -c zmount -n "__fish_zmount_using_subcommand serve" -l dir -d 'Directory for the socket, log and default mount point [env: ZMOUNT_DIR]' -r -F
complete -c zmount -n "__fish_zmount_using_subcommand serve" -l log-level -d 'Log level or filter (error, warn, info, debug, trace) [env: ZMOUNT_LOG]' -r
complete -c zmount -n "__fish_zmount_using_subcommand serve" -l foreground -d 'Stay attached; log to stderr'
complete -c zmount -n "__fish_zmount_using_subcommand serve" -l read-only -d 'Serve read-only views only: the mount is read-only and `run --edit` is refused'
complete -c zmount -n "__fish_zmount_using_subcommand serve" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c zmount -n "__fish_zmount_using_subcommand mount" -l store -d 'Store directory [default: $ZKIT_STORE, $XDG_DATA_HOME/zkit, ~/.local/share/zkit]' -r -F
complete -c zmount -n "__fish_zmount_using_subcommand mount" -l name -d 'With --edit: the runtime to create, or to resume (then LAYERs may be left out) [default: a fresh name, printed]' -r
complete -c zmount -n "__fish_zmount_using_subcommand mount" -l dir -d 'Directory for the socket, log and default mount point [env: ZMOUNT_DIR]' -r -F
complete -c zmount -n "__fish_zmount_using_subcommand mount" -l log-level -d 'Log level or filter (error, warn, info, debug, trace) [env: ZMOUNT_LOG]' -r
complete -c zmount -n "__fish_zmount_using_subcommand mount" -l foreground -d 'Stay attached until unmounted or signalled'
complete -c zmount -n "__fish_zmount_using_subcommand mount" -l edit -d 'Writable view: changes go to a runtime\'s scratch dir in the store (as with `run --edit`); `zcommit --runtime NAME` makes them a layer'
complete -c zmount -n "__fish_zmount_using_subcommand mount" -l rebase -d 'With --name: if the runtime exists on other layers, move its changes onto LAYERs (as with `run --rebase`)'
complete -c zmount -n "__fish_zmount_using_subcommand mount" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c zmount -n "__fish_zmount_using_subcommand umount" -l dir -d 'Directory for the socket, log and default mount point [env: ZMOUNT_DIR]' -r -F
complete -c zmount -n "__fish_zmount_using_subcommand umount" -l log-level -d 'Log level or filter (error, warn, info, debug, trace) [env: ZMOUNT_LOG]' -r
complete -c zmount -n "__fish_zmount_using_subcommand umount" -s l -l lazy -d 'Detach even if files are still open in it'
complete -c zmount -n "__fish_zmount_using_subcommand umount" -s h -l help -d 'Print help'
complete -c zmount -n "__fish_zmount_using_subcommand status" -l dir -d 'Directory for the socket, log and default mount point [env: ZMOUNT_DIR]' -r -F
complete -c zmount -n "__fish_zmount_using_subcommand status" -l log-level -d 'Log level or filter (error, warn, info, debug, trace) [env: ZMOUNT_LOG]' -r
complete -c zmount -n "__fish_zmount_using_subcommand status" -l json -d 'Print JSON (fields: version, pid, uptime_secs, mountpoint, views, cache_hits, cache_misses, healthy; each view\'s nodes are its layers\' merged nodes and, for an editable view, kept_nodes the node records the daemon keeps while the kernel holds them; a path that is not UTF-8 is an array of bytes)'
complete -c zmount -n "__fish_zmount_using_subcommand status" -s q -l quiet -d 'Print nothing; the exit status says whether the daemon is up and healthy'
complete -c zmount -n "__fish_zmount_using_subcommand status" -s v -l verbose -d 'Also print the socket and log, and each view\'s start time and layers, one a line'
complete -c zmount -n "__fish_zmount_using_subcommand status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c zmount -n "__fish_zmount_using_subcommand stop" -l dir -d 'Directory for the socket, log and default mount point [env: ZMOUNT_DIR]' -r -F
complete -c zmount -n "__fish_zmount_using_subcommand stop" -l log-level -d 'Log level or filter (error, warn, info, debug, trace) [env: ZMOUNT_LOG]' -r
complete -c zmount -n "__fish_zmount_using_subcommand stop" -l force -d 'Stop even while views are in use; their processes get errors from then on'
complete -c zmount -n "__fish_zmount_using_subcommand stop" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c zmount -n "__fish_zmount_using_subcommand register" -l store -r -F
complete -c zmount -n "__fish_zmount_using_subcommand register" -l dir -d 'Directory for the socket, log and default mount point [env: ZMOUNT_DIR]' -r -F
complete -c zmount -n "__fish_zmount_using_subcommand register" -l log-level -d 'Log level or filter (error, warn, info, debug, trace) [env: ZMOUNT_LOG]' -r
complete -c zmount -n "__fish_zmount_using_subcommand register" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c zmount -n "__fish_zmount_using_subcommand unregister" -l dir -d 'Directory for the socket, log and default mount point [env: ZMOUNT_DIR]' -r -F
complete -c zmount -n "__fish_zmount_using_subcommand unregister" -l log-level -d 'Log level or filter (error, warn, info, debug, trace) [env: ZMOUNT_LOG]' -r
complete -c zmount -n "__fish_zmount_using_subcommand unregister" -s h -l help -d 'Print help'
complete -c zmount -n "__fish_zmount_using_subcommand help; and not __fish_seen_subcommand_from run serve mount umount status stop register unregister help" -f -a "run" -d 'Run CMD with the stack of LAYERs visible to it and all its descendants'
complete -c zmount -n "__fish_zmount_using_subcommand help; and not __fish_seen_subcommand_from run serve mount umount status stop register unregister help" -f -a "serve" -d 'Run the daemon: one routed FUSE mount and the control socket'
complete -c zmount -n "__fish_zmount_using_subcommand help; and not __fish_seen_subcommand_from run serve mount umount status stop register unregister help" -f -a "mount" -d 'Mount one stack at MOUNTPOINT, without routing (fastest)'
complete -c zmount -n "__fish_zmount_using_subcommand help; and not __fish_seen_subcommand_from run serve mount umount status stop register unregister help" -f -a "umount" -d 'Unmount a mount made by `zmount mount`'
complete -c zmount -n "__fish_zmount_using_subcommand help; and not __fish_seen_subcommand_from run serve mount umount status stop register unregister help" -f -a "status" -d 'Show the daemon\'s mount point, views, cache figures and health'
complete -c zmount -n "__fish_zmount_using_subcommand help; and not __fish_seen_subcommand_from run serve mount umount status stop register unregister help" -f -a "stop" -d 'Stop the daemon and unmount its mount point (refused while views are in use)'
complete -c zmount -n "__fish_zmount_using_subcommand help; and not __fish_seen_subcommand_from run serve mount umount status stop register unregister help" -f -a "register" -d 'Plumbing: show LAYERs to an existing process tree (yours) rooted at PID'
complete -c zmount -n "__fish_zmount_using_subcommand help; and not __fish_seen_subcommand_from run serve mount umount status stop register unregister help" -f -a "unregister" -d 'Plumbing: remove the view registered for PID'
complete -c zmount -n "__fish_zmount_using_subcommand help; and not __fish_seen_subcommand_from run serve mount umount status stop register unregister help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
