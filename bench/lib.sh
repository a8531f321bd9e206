# Sourced by the bench/ scripts: shared data, made once and cached under bench/work/data,
# so every tool is measured on the same files.
#   bench_need TOOL...          fail with an install hint unless every TOOL is on PATH
#   bench_tree                  path of a copy of /usr/share (40k+ real files, ~650 MB)
#   bench_big [MIB]             path of a file of MIB (default 512) random MiB
#   bench_xfs                   mount point of an XFS loop image with reflink (root only)
#   bench_rss CMD...            peak RSS in KiB of one run of CMD (its largest process)
#   bench_fresh_fs TYPE SIZE MNT   a new ext4 or xfs file system mounted on MNT (root only)
#   bench_fresh_fs_cleanup      unmount and remove every file system bench_fresh_fs made
#   bench_hold_free_pages       keep freed memory from the VM's host until
#   bench_release_free_pages    is called (on exit); a no-op off such VMs
# BENCH_QUICK=1 makes bench_tree copy /usr/share/doc and bench_big 64 MiB instead.

BENCH_WORK=${BENCH_WORK:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/work}
BENCH_DATA=$BENCH_WORK/data
mkdir -p "$BENCH_DATA"

bench_need() {
    local t
    for t in "$@"; do
        command -v "$t" >/dev/null || {
            echo "bench: needs $t (apt-get install it: see bench/run)" >&2
            exit 1
        }
    done
}

bench_tree() {
    local src=/usr/share name=tree
    [ "${BENCH_QUICK:-}" = 1 ] && { src=/usr/share/doc; name=tree-quick; }
    if [ ! -e "$BENCH_DATA/$name.done" ]; then
        rm -rf "${BENCH_DATA:?}/$name"
        cp -a "$src" "$BENCH_DATA/$name" 2>/dev/null || true
        touch "$BENCH_DATA/$name.done"
    fi
    echo "$BENCH_DATA/$name"
}

bench_big() {
    local mib=${1:-512}
    [ "${BENCH_QUICK:-}" = 1 ] && [ -z "${1:-}" ] && mib=64
    local f=$BENCH_DATA/big-$mib
    [ -e "$f" ] || head -c "${mib}M" /dev/urandom >"$f"
    echo "$f"
}

bench_xfs() {
    local img=$BENCH_WORK/xfs.img mnt=$BENCH_WORK/xfs
    if ! mountpoint -q "$mnt"; then
        [ "$(id -u)" = 0 ] || { echo "bench: XFS loop image needs root" >&2; exit 1; }
        mkdir -p "$mnt"
        rm -f "$img"
        truncate -s 6G "$img"
        mkfs.xfs -q -m reflink=1 "$img"
        mount -o loop "$img" "$mnt"
    fi
    echo "$mnt"
}

bench_rss() {
    local out
    out=$(mktemp)
    /usr/bin/time -o "$out" -f %M "$@" >/dev/null
    cat "$out"
    rm -f "$out"
}

# A new file system of TYPE (ext4 or xfs, with reflink) and SIZE in MNT.img, mounted on MNT
# through a direct-I/O loop device (the image's pages are not cached a second time). A
# shared, busy file system measures its history, not the tools: on ext4 a create within
# minutes of deleting many inodes pays for skipping the recently freed ones
# (recently_deleted() in the inode allocator), and XFS inactivates deleted inodes in the
# background. Call bench_fresh_fs_cleanup on exit.
BENCH_MOUNTS=() BENCH_LOOPS=() BENCH_IMAGES=()
bench_fresh_fs() {
    local fs=$1 size=$2 mnt=$3 dev
    mkdir -p "$mnt"
    truncate -s "$size" "$mnt.img"
    BENCH_IMAGES+=("$mnt.img")
    case $fs in
        ext4) mkfs.ext4 -q -F "$mnt.img" ;;
        xfs) mkfs.xfs -q -m reflink=1 "$mnt.img" ;;
    esac
    dev=$(losetup --direct-io=on -f --show "$mnt.img")
    BENCH_LOOPS+=("$dev")
    mount "$dev" "$mnt"
    BENCH_MOUNTS+=("$mnt")
}

bench_fresh_fs_cleanup() {
    local m d
    for m in "${BENCH_MOUNTS[@]}"; do umount "$m" 2>/dev/null || umount -l "$m"; done
    for d in "${BENCH_LOOPS[@]}"; do losetup -d "$d" 2>/dev/null || true; done
    rm -f "${BENCH_IMAGES[@]}"
    BENCH_MOUNTS=() BENCH_LOOPS=() BENCH_IMAGES=()
}

# This machine's VM kernel hands memory back to its host as soon as it is freed (free page
# reporting with min_free_ms=0), and the next command to touch that memory waits while the
# host faults it back in: a 512 MiB cp then took 1.0-1.3 s instead of 0.14 s, in whichever
# column came after a big delete. Reporting only what stayed free for a minute keeps the
# freed pages here while the bench runs; every column gets the same memory.
BENCH_FREE_PAGES_KNOB=/sys/module/page_reporting/parameters/min_free_ms BENCH_FREE_PAGES_WAS=
bench_hold_free_pages() {
    [ -w "$BENCH_FREE_PAGES_KNOB" ] || return 0
    BENCH_FREE_PAGES_WAS=$(cat "$BENCH_FREE_PAGES_KNOB")
    echo 60000 >"$BENCH_FREE_PAGES_KNOB"
}
bench_release_free_pages() {
    [ -n "$BENCH_FREE_PAGES_WAS" ] || return 0
    echo "$BENCH_FREE_PAGES_WAS" >"$BENCH_FREE_PAGES_KNOB"
    BENCH_FREE_PAGES_WAS=
}
