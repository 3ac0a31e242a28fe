/*
 * Stand-in for the Windows SDK's include-order rule, for mingw-w64 (tools/test.sh, check
 * "windows-sdk-include-order"). In the SDK, mstcpip.h defines _SECURE_SOCKET_TYPES_DEFINED_ and ws2tcpip.h
 * declares WSAQuerySocketSecurity and its five siblings only when that is defined; mingw-w64's ws2tcpip.h
 * declares them whatever the order, so a wrong order builds here and fails with MSVC (C4013, then an
 * unresolved _WSAQuerySocketSecurity on x86). This pair of headers restores the SDK's rule.
 */
#ifndef SECSOCK_SDK_ORDER_MSTCPIP_SEEN
#define SECSOCK_SDK_ORDER_MSTCPIP_SEEN 1
#endif
#include_next <mstcpip.h>
