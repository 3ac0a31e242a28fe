/* See mstcpip.h beside this file: the Windows SDK's ws2tcpip.h declares the secure socket functions only after
   mstcpip.h (the order of Microsoft's "Using Secure Socket Extensions" sample). */
#ifndef SECSOCK_SDK_ORDER_MSTCPIP_SEEN
#error "include <mstcpip.h> before <ws2tcpip.h>: the Windows SDK declares WSAQuerySocketSecurity only then"
#endif
#include_next <ws2tcpip.h>
