/*
 * LD_PRELOAD shim for the host tests: getsockopt(SOL_SOCKET, SO_BINDTOIFINDEX) fails with the errno in
 * SECSOCK_TEST_BINDTOIFINDEX_ERRNO (ENOPROTOOPT: what a kernel that cannot read the option back answers).
 * Every other call goes to the C library's getsockopt.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>

int getsockopt(int fd, int level, int name, void *val, socklen_t *len)
{
    static int (*real)(int, int, int, void *, socklen_t *);
    const char *fail = getenv("SECSOCK_TEST_BINDTOIFINDEX_ERRNO");

    if (level == SOL_SOCKET && name == SO_BINDTOIFINDEX && fail != NULL) {
        errno = atoi(fail);
        return -1;
    }
    if (real == NULL) {
        *(void **)&real = dlsym(RTLD_NEXT, "getsockopt");
    }
    return real(fd, level, name, val, len);
}
