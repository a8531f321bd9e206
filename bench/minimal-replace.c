/* The floor for an atomic, durable replace: read stdin into a temp file next to FILE,
 * fsync it, rename it over FILE, fsync the directory. No metadata, no locking, no
 * O_TMPFILE, no error messages: what any correct tool must at least do. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    char tmp[4096], dirbuf[4096];
    snprintf(tmp, sizeof tmp, "%s.min-tmp", argv[1]);
    snprintf(dirbuf, sizeof dirbuf, "%s", argv[1]);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return 1;
    static char buf[1 << 17];
    ssize_t n;
    while ((n = read(0, buf, sizeof buf)) > 0)
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(fd, buf + off, n - off);
            if (w < 0) return 1;
            off += w;
        }
    if (n < 0 || fsync(fd) || close(fd) || rename(tmp, argv[1])) return 1;
    int dfd = open(dirname(dirbuf), O_RDONLY | O_DIRECTORY);
    if (dfd < 0 || fsync(dfd)) return 1;
    return 0;
}
