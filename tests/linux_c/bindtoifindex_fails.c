/*
 * LD_PRELOAD shim for the host tests: getsockopt(SOL_SOCKET, SO_BINDTOIFINDEX) fails with the errno in
 * SECSOCK_TEST_BINDTOIFINDEX_ERRNO (ENOPROTOOPT: what a kernel that cannot read the option back answers).
 * With SECSOCK_TEST_BINDTODEVICE_RENAMED set, every getsockopt(SOL_SOCKET, SO_BINDTODEVICE) after the first
 * answers that name instead: the bound device renamed between two reads. Every other call goes to the C
 * library's getsockopt.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

int getsockopt(int fd, int level, int name, void *val, socklen_t *len)
{
    static int (*real)(int, int, int, void *, socklen_t *);
    static int bindtodevice_reads;
    const char *fail = getenv("SECSOCK_TEST_BINDTOIFINDEX_ERRNO");
    const char *renamed = getenv("SECSOCK_TEST_BINDTODEVICE_RENAMED");

    if (level == SOL_SOCKET && name == SO_BINDTOIFINDEX && fail != NULL) {
        errno = atoi(fail);
        return -1;
    }
    if (level == SOL_SOCKET && name == SO_BINDTODEVICE && renamed != NULL && bindtodevice_reads++ > 0 &&
        *len > strlen(renamed)) {
        strcpy(val, renamed);
        *len = (socklen_t)strlen(renamed) + 1;
        return 0;
    }
    if (real == NULL) {
        *(void **)&real = dlsym(RTLD_NEXT, "getsockopt");
    }
    return real(fd, level, name, val, len);
}
