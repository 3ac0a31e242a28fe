/* The flow of a socket: its facts (cached per socket cookie), addresses, route interface and XFRM interface. */
#include "backend_linux.h"

#include <assert.h>

#include <fcntl.h>
#include <net/if.h>     /* struct ifreq */
#include <linux/ip.h>   /* IPV4_DEVCONF_* */
#include <linux/ipv6.h> /* DEVCONF_* */
#include <linux/fib_rules.h> /* struct fib_rule_hdr, FRA_UID_RANGE */
#include <linux/inet_diag.h> /* struct inet_diag_req_v2, inet_diag_msg */
#include <linux/sock_diag.h> /* SOCK_DIAG_BY_FAMILY */

/*
 * SO_MARK matters only to a policy or SA with a mark mask and to route lookups; SO_BINDTOIFINDEX only to route
 * lookups. Both are read when first needed, and again by every query (either can change on a live socket).
 * A failure to read the mark is kept in mark_errno and fails the query once the evaluation is over.
 * (flow_mark is static inline in backend_linux.h: the policy lookup calls it for every candidate.)
 */

/*
 * The index of the device named ifr->ifr_name, which SO_BINDTODEVICE said the socket is bound to, into
 * ifr->ifr_ifindex: 0, or -1 on error. A rename between the two reads would give another device's index
 * (issue 14 review 2, item 12): the socket's device is read by name again after SIOCGIFINDEX, and the index
 * named back (SIOCGIFNAME), and any difference raises: the bound device changed its name under the query.
 */
static int bound_index_by_name(int sock, struct ifreq *ifr, secsock_error *err)
{
    char again[IFNAMSIZ];
    struct ifreq back;
    socklen_t len = sizeof(again);

    if (ioctl(sock, SIOCGIFINDEX, ifr) != 0) {
        return os_error(err, errno, "ioctl(SIOCGIFINDEX)", ifr->ifr_name);
    }
    memset(again, 0, sizeof(again));
    if (getsockopt(sock, SOL_SOCKET, SO_BINDTODEVICE, again, &len) != 0) {
        return os_error(err, errno, "getsockopt(SO_BINDTODEVICE)", NULL);
    }
    memset(&back, 0, sizeof(back));
    back.ifr_ifindex = ifr->ifr_ifindex;
    if (ioctl(sock, SIOCGIFNAME, &back) != 0) {
        return os_error(err, errno, "ioctl(SIOCGIFNAME)", ifr->ifr_name);
    }
    if (strncmp(again, ifr->ifr_name, IFNAMSIZ) != 0 || strncmp(back.ifr_name, ifr->ifr_name, IFNAMSIZ) != 0) {
        return secsock_error_set(err, SECSOCK_ERR_OS, EBUSY, 0, "getsockopt(SO_BINDTODEVICE)",
                                 "the device the socket is bound to (%.16s) was renamed while it was read",
                                 ifr->ifr_name);
    }
    return 0;
}

/*
 * The device the socket is bound to (sk_bound_dev_if), 0 for none, into *ifindex: 0, or -1 on error. A kernel
 * that does not answer getsockopt(SO_BINDTOIFINDEX) says ENOPROTOOPT (sk_getsockopt's default case; the
 * option is read back from Linux 5.1 on, f5dd3d0c9638): the same field is then read by name (SO_BINDTODEVICE, which
 * answers with an empty name when unbound) and the name turned into its index in the socket's own namespace
 * (SIOCGIFINDEX on the socket itself: sock_ioctl asks dev_ioctl in sock_net). Any other failure is an
 * error: "not bound" is never assumed.
 */
static int flow_bound_ifindex(ss_flow *f, int *ifindex, secsock_error *err)
{
    *ifindex = 0; /* defined on the error paths too (gcc -O2's -Wmaybe-uninitialized cannot see os_error's -1) */
    if (!f->bif_read) {
        socklen_t len = sizeof(f->bound_ifindex);
        if (getsockopt(f->sock, SOL_SOCKET, SO_BINDTOIFINDEX, &f->bound_ifindex, &len) != 0) {
            struct ifreq ifr;
            int gerr = errno;
            if (gerr != ENOPROTOOPT) {
                return os_error(err, gerr, "getsockopt(SO_BINDTOIFINDEX)", NULL);
            }
            memset(&ifr, 0, sizeof(ifr));
            len = sizeof(ifr.ifr_name); /* sock_getbindtodevice: EINVAL below IFNAMSIZ; the name ends in NUL */
            if (getsockopt(f->sock, SOL_SOCKET, SO_BINDTODEVICE, ifr.ifr_name, &len) != 0) {
                return os_error(err, errno, "getsockopt(SO_BINDTODEVICE)", NULL);
            }
            f->bound_ifindex = 0;
            if (len > 0 && ifr.ifr_name[0] != '\0') {
                if (bound_index_by_name(f->sock, &ifr, err) != 0) {
                    return -1;
                }
                f->bound_ifindex = ifr.ifr_ifindex;
            }
        }
        f->bif_read = 1;
    }
    *ifindex = f->bound_ifindex;
    return 0;
}

typedef struct {
    int oif;           /* RTA_OIF */
    unsigned char type; /* rtm_type: RTN_LOCAL for an address of this host */
    unsigned char tos, scope, dst_len; /* rtm_tos, rtm_scope, rtm_dst_len (a dump's routes: on_v4_route) */
    uint32_t table;    /* RTA_TABLE, else rtm_table */
    uint8_t dst[4];    /* an IPv4 RTA_DST (a dump's routes) */
    int has_prefsrc;   /* RTA_PREFSRC was given: rt_fill_info puts an output route's fl4->saddr when it is
                        * not the RTA_SRC asked */
    uint8_t prefsrc[4];
    int lo_nh;         /* a nexthop by loopback (RTA_OIF, or one of RTA_MULTIPATH's), or a nexthop object
                        * (RTA_NH_ID) whose nexthops the message does not list (nexthop_compat_mode 0) */
} route_answer;

/* Does an RTA_MULTIPATH (struct rtnexthop after struct rtnexthop, each with its attributes) name loopback
 * (LOOPBACK_IFINDEX) as a nexthop's device? A list cut short counts as naming it. */
static int multipath_has_lo(const uint8_t *data, size_t len)
{
    struct rtnexthop nh;
    size_t step;

    while (len >= sizeof(nh)) {
        memcpy(&nh, data, sizeof(nh));
        if (nh.rtnh_len < sizeof(nh) || nh.rtnh_len > len || nh.rtnh_ifindex == 1) {
            return 1;
        }
        step = (size_t)RTNH_ALIGN(nh.rtnh_len);
        if (step >= len) {
            return 0; /* the last one */
        }
        data += step;
        len -= step;
    }
    return len != 0; /* bytes left too few for a nexthop: cut short (review of f7d6545, item 5) */
}

static int on_route(void *vctx, uint16_t type, uint16_t flags, const void *payload, size_t len)
{
    route_answer *ra = vctx;
    int *oif = &ra->oif;
    struct rtmsg rtm;
    attr_iter it;
    uint16_t at;
    const uint8_t *data;
    size_t dlen;
    int r, listed = 0, nh_object = 0;

    (void)flags;
    if (type != RTM_NEWROUTE || len < sizeof(struct rtmsg)) {
        return 0;
    }
    memcpy(&rtm, payload, sizeof(rtm));
    ra->type = rtm.rtm_type;
    ra->tos = rtm.rtm_tos;
    ra->scope = rtm.rtm_scope;
    ra->dst_len = rtm.rtm_dst_len;
    ra->table = rtm.rtm_table;
    it.p = (const uint8_t *)payload + NLMSG_ALIGN(sizeof(struct rtmsg));
    it.left = len > NLMSG_ALIGN(sizeof(struct rtmsg)) ? len - NLMSG_ALIGN(sizeof(struct rtmsg)) : 0;
    while ((r = attr_next(&it, &at, &data, &dlen)) > 0) {
        if (at == RTA_OIF && dlen >= sizeof(int)) {
            memcpy(oif, data, sizeof(int));
            ra->lo_nh |= *oif == 1;
            listed = 1;
        }
        if (at == RTA_MULTIPATH) {
            ra->lo_nh |= multipath_has_lo(data, dlen);
            listed = 1;
        }
        nh_object |= at == RTA_NH_ID;
        if (at == RTA_DST && rtm.rtm_family == AF_INET && dlen >= sizeof(ra->dst)) {
            memcpy(ra->dst, data, sizeof(ra->dst));
        }
        if (at == RTA_TABLE && dlen >= sizeof(ra->table)) {
            memcpy(&ra->table, data, sizeof(ra->table));
        }
        if (at == RTA_PREFSRC && rtm.rtm_family == AF_INET && dlen >= sizeof(ra->prefsrc)) {
            memcpy(ra->prefsrc, data, sizeof(ra->prefsrc));
            ra->has_prefsrc = 1;
        }
    }
    ra->lo_nh |= nh_object && !listed;
    return 0;
}

static void add_rta(uint8_t *buf, size_t *off, uint16_t type, const void *data, size_t dlen)
{
    struct rtattr a;
    a.rta_len = (unsigned short)RTA_LENGTH(dlen);
    a.rta_type = type;
    memcpy(buf + *off, &a, sizeof(a));
    memcpy(buf + *off + RTA_LENGTH(0), data, dlen);
    *off += RTA_SPACE(dlen);
}

static int conf_uid_rules(ss_flow *f, int *any, secsock_error *err);

/*
 * What the kernel's output route lookup for this socket keys on besides addresses, mark and device
 * (flowi4_init_output in ip_route_connect, udp_sendmsg, inet_csk_route_req: RT_CONN_FLAGS(sk), the protocol,
 * the ports, sk->sk_uid), all of which `ip rule` can select on (fib_rule_match: uidrange; fib4_rule_match:
 * dsfield, ipproto, sport, dport). sk_uid is the owner of the socket's sockfs inode: sock_init_data and
 * sock_graft (an accepted socket) copy it from there, sockfs_setattr (fchown) sets both, so fstat reads it;
 * only fib_rule_match reads the flow's uid, so it is read only while some rule has a uidrange (conf_uid_rules,
 * kept 1 s), and is 0 otherwise. Read once per query, and only when a route is asked. 0, or -1 on error.
 */
static int flow_route_keys(ss_flow *f, secsock_error *err)
{
    struct stat st;
    int tos = 0, uid_rules;
    socklen_t len = sizeof(tos);

    if (f->route_keys_read) {
        return 0;
    }
    if (conf_uid_rules(f, &uid_rules, err) != 0) {
        return -1;
    }
    f->uid = 0;
    if (uid_rules) {
        if (fstat(f->sock, &st) != 0) {
            return os_error(err, errno, "fstat", "reading the socket's owner (sk_uid): fstat");
        }
        f->uid = (uint32_t)st.st_uid;
    }
    /* An IPv4-mapped flow on an AF_INET6 socket sends with inet->tos too; ipv6_getsockopt passes SOL_IP on. */
    if (f->family == AF_INET && getsockopt(f->sock, IPPROTO_IP, IP_TOS, &tos, &len) != 0) {
        return os_error(err, errno, "getsockopt(IP_TOS)", NULL);
    }
    f->tos = (uint8_t)tos;
    f->route_keys_read = 1;
    return 0;
}

/*
 * The route toward dst (from src when not NULL): RTM_GETROUTE, no dump, no privilege, with what the socket's
 * own lookup uses (inet_rtm_getroute / inet6_rtm_getroute read each into the flow they route: rtm_tos,
 * RTA_MARK, RTA_OIF, RTA_UID, RTA_IP_PROTO, RTA_SPORT, RTA_DPORT; without RTA_UID they would use the
 * caller's uid). Toward the peer, the socket's keys; toward the socket's own address (dst == f->local, the
 * inbound device) the arriving packet's: its ports reversed and, as ip_route_input_slow's
 * sock_net_uid(net, NULL), uid 0; its TOS is the peer's and unknown, and the local table, whose rule comes
 * first, answers there anyway. Kernels before 4.17 (RTA_IP_PROTO, ports) and 4.10 (RTA_UID) ignore what they
 * do not know (their getroute parses liberally; this socket never asks for strict checking).
 * rtm_getroute_parse_ip_proto accepts TCP and UDP only (for a socket): UDP-Lite, SCTP and DCCP flows are asked
 * without a protocol (README: an `ip rule ipproto` for them is not seen). IPv6: inet6_rtm_getroute takes
 * rtm_tos as the traffic class (seen on 6.18), but the socket's own lookups differ in what they carry
 * (udpv6_sendmsg adds the IPV6_TCLASS, a connect's ip6_datagram_dst_update only np->flow_label), and no
 * attribute carries a flow label: IPv6 routes are asked without either (README).
 */
static int route_get(ss_flow *f, const uint8_t *dst, const uint8_t *src, int oif, route_answer *ra,
                     secsock_error *err)
{
    uint8_t body[256];
    struct rtmsg rtm;
    size_t off = NLMSG_ALIGN(sizeof(rtm));
    int toward_peer = dst != f->local;
    uint32_t uid;

    if (flow_route_keys(f, err) != 0) {
        return -1;
    }
    memset(ra, 0, sizeof(*ra));
    memset(body, 0, sizeof(body));
    memset(&rtm, 0, sizeof(rtm));
    rtm.rtm_family = (unsigned char)f->family;
    rtm.rtm_dst_len = (unsigned char)(addr_len(f->family) * 8);
    /* The DSCP bits: the ECN bits take no part in routing (6.1 masks with IPTOS_RT_MASK, later kernels keep
     * the DSCP), and the socket's lookup drops them as well. */
    rtm.rtm_tos = toward_peer && f->family == AF_INET ? (unsigned char)(f->tos & 0xfc) : 0;
    memcpy(body, &rtm, sizeof(rtm));
    add_rta(body, &off, RTA_DST, dst, addr_len(f->family));
    /* A socket bound to the wildcard address routes with no source (udp_sendmsg: saddr 0; udpv6_sendmsg,
     * ip6_dst_lookup_tail: any), so an `ip rule from` or IPv6 source route for the source it then picks
     * does not apply to it (review of i14-route, item 2). */
    if (src != NULL && !(toward_peer && f->local_wild)) {
        add_rta(body, &off, RTA_SRC, src, addr_len(f->family));
    }
    if (flow_mark(f) != 0) {
        add_rta(body, &off, RTA_MARK, &f->mark, sizeof(f->mark));
    }
    if (oif > 0) {
        add_rta(body, &off, RTA_OIF, &oif, sizeof(oif));
    }
    uid = toward_peer ? f->uid : 0;
    add_rta(body, &off, RTA_UID, &uid, sizeof(uid));
    if (f->proto == IPPROTO_TCP || f->proto == IPPROTO_UDP) {
        add_rta(body, &off, RTA_IP_PROTO, &f->proto, sizeof(f->proto));
    }
    add_rta(body, &off, RTA_SPORT, toward_peer ? &f->lport : &f->pport, sizeof(f->lport));
    add_rta(body, &off, RTA_DPORT, toward_peer ? &f->pport : &f->lport, sizeof(f->pport));
    return nl_request(NETLINK_ROUTE, RTM_GETROUTE, NLM_F_ACK, body, off, on_route, ra, "RTM_GETROUTE", err);
}

static int flow_v4_multicast(const ss_flow *f)
{
    return f->family == AF_INET && f->peer[0] >= 224 && f->peer[0] <= 239;
}

static int flow_udp(const ss_flow *f)
{
    return f->proto == IPPROTO_UDP || f->proto == IPPROTO_UDPLITE;
}

static int bound_to_l3mdev(ss_flow *f, secsock_error *err);

/*
 * Can the device the socket sends by be told here? The one rule behind a selector's device (flow_sel_dev),
 * the XFRM interface (resolve_if_id) and the local-peer route (conf_local_dev). 1 yes, 0 no, -1 on error.
 * - IPv4 UDP/UDP-Lite: no. udp_sendmsg starts ipc.oif from the bound device (ipcm_init_sk), then a message's
 *   IP_PKTINFO cmsg replaces it whenever ipi_ifindex is set (ip_cmsg_send), with no check against the bound
 *   device (IPv6 has one); toward a multicast peer inet->mc_index (IP_MULTICAST_IF), which no getsockopt
 *   returns, comes first. Seen on 6.18: a socket bound to vc sending with IP_PKTINFO naming vb meets a
 *   `dev vb` block, and one bound to vb naming vc passes it.
 * - Never for a socket bound to a VRF master (an l3mdev), asked first: its table picks the slave
 *   (l3mdev_update_flow), and ip6_datagram_send_ctl lets a message's IPV6_PKTINFO name any of its slaves
 *   (sk_dev_equal_l3scope), a link-local peer's scope notwithstanding when that scope is the master itself.
 * - IPv6 UDP/UDP-Lite: only with a link-local peer's scope or a bound device. Without either, udpv6_sendmsg
 *   takes a per-message or sticky IPV6_PKTINFO ifindex (np->sticky_pktinfo, which no getsockopt returns)
 *   before IPV6_UNICAST_IF; with one, ip6_datagram_send_ctl refuses another ifindex (EINVAL).
 * - Other protocols: yes.
 */
static int flow_out_dev_knowable(ss_flow *f, secsock_error *err)
{
    int bound = 0, l3mdev = 0;

    if (f->dev_knowable == 0) {
        if (f->family == AF_INET && flow_udp(f)) {
            f->dev_knowable = SS_KNOW_NO;
        } else {
            /* The VRF master first, before a link-local peer's scope (issue 14 review 2, item 4). */
            if (flow_bound_ifindex(f, &bound, err) != 0 || (l3mdev = bound_to_l3mdev(f, err)) < 0) {
                return -1;
            }
            f->dev_knowable = l3mdev || (f->family == AF_INET6 && flow_udp(f) && bound == 0 && f->peer_scope == 0)
                                  ? SS_KNOW_NO
                                  : SS_KNOW_YES;
        }
    }
    return f->dev_knowable == SS_KNOW_YES;
}

/*
 * The device the socket sends by when a message names none, for asking the route (udp_sendmsg: ipc.oif starts
 * as the bound device, else inet->uc_index, IP_UNICAST_IF, which getsockopt returns in network byte order).
 * Toward an IPv4 multicast peer it is inet->mc_index, which no getsockopt returns: SS_DEV_UNKNOWN. 0 and *oif,
 * SS_DEV_UNKNOWN, or -1 on error.
 */
static int flow_oif_hint(ss_flow *f, int *oif, secsock_error *err)
{
    uint32_t ucast = 0;
    socklen_t len = sizeof(ucast);

    if (flow_bound_ifindex(f, oif, err) != 0) {
        return -1;
    }
    if (f->family != AF_INET || !flow_udp(f)) {
        return 0;
    }
    if (flow_v4_multicast(f)) {
        return SS_DEV_UNKNOWN;
    }
    if (*oif > 0) {
        return 0;
    }
    if (!f->uif_read) { /* once a query: asked per direction (review of d4aba7b, item 2) */
        if (getsockopt(f->sock, IPPROTO_IP, IP_UNICAST_IF, &ucast, &len) != 0) {
            return os_error(err, errno, "getsockopt(IP_UNICAST_IF)", NULL);
        }
        f->unicast_if = (int)ntohl(ucast);
        f->uif_read = 1;
    }
    *oif = f->unicast_if;
    return 0;
}

/*
 * Is SO_DONTROUTE set on an IPv4 socket? Its lookups are then link-scoped (ip_sock_rt_scope: RT_SCOPE_LINK,
 * and fib_table_lookup passes over every route via a gateway), which RTM_GETROUTE has no attribute for: the
 * device and source the route names may not be the socket's (review of i14-route, item 6). A message's
 * MSG_DONTROUTE does the same for an IPv4 UDP message, whose device is not decidable anyway. 1, 0, or -1.
 */
static int flow_dontroute(const ss_flow *f, secsock_error *err)
{
    int v = 0;
    socklen_t len = sizeof(v);

    if (f->family != AF_INET) {
        return 0;
    }
    if (getsockopt(f->sock, SOL_SOCKET, SO_DONTROUTE, &v, &len) != 0) {
        return os_error(err, errno, "getsockopt(SO_DONTROUTE)", NULL);
    }
    return v != 0;
}

typedef struct {
    uint16_t lport; /* network order */
    uint32_t uid;
    int differs;
} listener_scan;

/* A dump's TCP listener on the flow's local port (any address: wider than the kernel's match, so never
 * fewer "not decidable") whose owner is not the socket's. */
static int on_listener(void *vctx, uint16_t type, uint16_t flags, const void *payload, size_t len)
{
    listener_scan *ls = vctx;
    struct inet_diag_msg m;

    (void)flags;
    if (type != SOCK_DIAG_BY_FAMILY || len < sizeof(m)) {
        return 0;
    }
    memcpy(&m, payload, sizeof(m));
    ls->differs |= m.id.idiag_sport == ls->lport && m.idiag_uid != ls->uid;
    return 0;
}

/*
 * Review of i14-route, item 1: an accepted TCP socket keeps the route inet_csk_route_child_sock built with
 * the LISTENER's sk_uid (and TOS), while sock_graft then gives it the accepting process's owner, and fchown
 * another, without a new route: RTA_UID asks for the socket's. A listener on the socket's port (sock_diag,
 * both families: a dual-stack listener accepts IPv4) owned by another uid makes the route not decidable.
 * A connected socket has no listener on its port and stays decided; so does an accepted one whose listener
 * is closed (README). 1, 0, or -1 on error.
 */
static int tcp_listener_uid_differs(const ss_flow *f, secsock_error *err)
{
    static const int families[] = {AF_INET, AF_INET6};
    struct inet_diag_req_v2 req;
    listener_scan ls;
    size_t i;

    memset(&ls, 0, sizeof(ls));
    ls.lport = f->lport;
    ls.uid = f->uid;
    for (i = 0; i < sizeof(families) / sizeof(families[0]); i++) {
        memset(&req, 0, sizeof(req));
        req.sdiag_family = (uint8_t)families[i];
        req.sdiag_protocol = IPPROTO_TCP;
        req.idiag_states = 1u << 10; /* TCP_LISTEN */
        /* Only the listeners on the socket's port: inet_diag_dump_icsk skips the others (id.idiag_sport,
         * compared with inet_sport when set), so a host with many listeners answers with a message or two. */
        req.id.idiag_sport = f->lport;
        if (nl_request(NETLINK_SOCK_DIAG, SOCK_DIAG_BY_FAMILY, NLM_F_DUMP, &req, sizeof(req), on_listener, &ls,
                       "SOCK_DIAG_BY_FAMILY", err) != 0) {
            return -1;
        }
    }
    return ls.differs;
}

#define SS_OVERFLOWUID 65534 /* DEFAULT_OVERFLOWUID: what fstat says for an owner unmapped here */

/*
 * Can the route toward the peer not be asked as the socket's own lookup makes it? SO_DONTROUTE
 * (flow_dontroute), or an owner fstat reports as the overflow uid (unmapped in this user namespace,
 * from_kuid_munged; or truly uid 65534) while some `ip rule` selects on the uid (conf_uid_rules): RTA_UID
 * would ask for 65534, not the socket's sk_uid (review of i14-route, item 11). 1, 0, or -1 on error.
 */
static int flow_route_unknowable(ss_flow *f, secsock_error *err)
{
    int rc, uid_rules;

    if ((rc = flow_dontroute(f, err)) != 0 || (rc = flow_route_keys(f, err)) != 0) {
        return rc;
    }
    if (f->uid != SS_OVERFLOWUID && f->proto != IPPROTO_TCP) {
        return 0;
    }
    if (conf_uid_rules(f, &uid_rules, err) != 0) {
        return -1;
    }
    if (!uid_rules || f->uid == SS_OVERFLOWUID) {
        return uid_rules;
    }
    return tcp_listener_uid_differs(f, err);
}

/*
 * The interface the flow leaves by, as the routing table says, asked with the device the socket sends by
 * (ip_route_output_key_hash_rcu answers with another for a local peer, lo or the VRF master, or for a socket
 * bound to a VRF master, its slave). Asked only where flow_out_dev_knowable says the device can be told.
 * 0, SS_DEV_UNKNOWN (the hint cannot be read, or flow_route_unknowable), or -1 on error.
 */
int resolve_oif(ss_flow *f, secsock_error *err)
{
    route_answer ra;
    int hint = 0, rc;

    if (f->oif >= 0) {
        return 0;
    }
    if (f->peer_scope != 0) {
        /* A datagram sent to a link-local peer leaves by its scope's interface (udpv6_sendmsg: flowi6_oif =
         * sin6_scope_id when __ipv6_addr_needs_scope_id), before the socket's own device. */
        f->oif = (int)f->peer_scope;
        return 0;
    }
    if ((rc = flow_oif_hint(f, &hint, err)) != 0) {
        return rc;
    }
    if ((rc = flow_route_unknowable(f, err)) != 0) {
        return rc > 0 ? SS_DEV_UNKNOWN : -1;
    }
    if (route_get(f, f->peer, f->local, hint, &ra, err) != 0) {
        return -1;
    }
    if (ra.oif <= 0) {
        return secsock_error_set(err, SECSOCK_ERR_OS, ENETUNREACH, 0, "RTM_GETROUTE",
                                 "the routing table names no interface toward the peer");
    }
    f->oif = ra.oif;
    return 0;
}

/*
 * The interface a selector's dev is compared with for this direction (xfrm_selector_match: sel->ifindex ==
 * fl->flowi_oif), which is not always the route's (issue 14 review, item 3). 0 and *ifindex (0: none), or
 * SS_DEV_UNKNOWN when it cannot be told here, or -1 on error.
 * - Outbound, where flow_out_dev_knowable says the device the socket sends by cannot be told: unknown.
 * - IPv4 outbound: the route's device (ip_route_output_key_hash_rcu writes it into flowi4_oif before
 *   xfrm_lookup_route).
 * - IPv6 outbound: only what the socket set (ip6_route_output leaves flowi6_oif alone): the scope id of a
 *   link-local peer (udpv6_sendmsg) or the bound device, else none.
 * - Outbound in an XFRM interface's own lookup (xfrmi_xmit2, both families): the interface's underlying
 *   device, IFLA_LINK (xfrmi_xmit sets fl.flowi_oif = xi->p.link), not the interface (issue 14 review 2,
 *   item 2): resolve_if_id read it with the if_id.
 * - Inbound, both families: decode_session4/6 take skb_dst(skb)->dev, the input route's device, which for
 *   local delivery is loopback, or the VRF master of the address's device (ip_rt_get_dev,
 *   ip6_rt_get_dev_rcu). The output route to the local address names the same device (RTN_LOCAL: dev_out
 *   is the l3mdev master or loopback); when that lookup does not find it local (a VRF address, seen from
 *   outside the VRF) the device is unknown.
 */
int flow_sel_dev(ss_flow *f, int dir, int *ifindex, secsock_error *err)
{
    int *cached = &f->sel_dev[dir == XFRM_POLICY_OUT];
    int rc;

    if (dir == XFRM_POLICY_OUT && f->in_if_id_lookup) {
        *ifindex = f->if_id_link;
        return 0;
    }
    if (*cached == -1) {
        if (dir == XFRM_POLICY_OUT) {
            if ((rc = flow_out_dev_knowable(f, err)) < 0) {
                return -1;
            }
            if (!rc) {
                *cached = SS_DEV_UNKNOWN;
            } else if (f->family == AF_INET6) {
                *cached = f->peer_scope != 0 ? (int)f->peer_scope : f->bound_ifindex;
            } else if ((rc = resolve_oif(f, err)) != 0) {
                if (rc != SS_DEV_UNKNOWN) {
                    return -1;
                }
                *cached = SS_DEV_UNKNOWN;
            } else {
                *cached = f->oif;
            }
        } else {
            route_answer ra;
            if (route_get(f, f->local, NULL, 0, &ra, err) != 0) {
                return -1;
            }
            *cached = ra.type == RTN_LOCAL && ra.oif > 0 ? ra.oif : SS_DEV_UNKNOWN;
        }
    }
    *ifindex = *cached;
    return *cached == SS_DEV_UNKNOWN ? SS_DEV_UNKNOWN : 0;
}

/* IFLA_AF_SPEC -> AF_INET -> IFLA_INET_CONF (the device's IPv4 devconf, a u32 per IPV4_DEVCONF_* - 1): the
 * SS_LO_* bits set there; and AF_INET6 -> IFLA_INET6_CONF's disable_policy as SS_V6_NOPOLICY. */
static int inet_conf_of(const uint8_t *data, size_t dlen)
{
    attr_iter spec, inet;
    uint16_t fam, it_type;
    const uint8_t *sdata, *idata;
    size_t slen, ilen;
    int conf = 0;

    spec.p = data;
    spec.left = dlen;
    while (attr_next(&spec, &fam, &sdata, &slen) > 0) {
        if (fam != AF_INET && fam != AF_INET6) {
            continue;
        }
        inet.p = sdata;
        inet.left = slen;
        while (attr_next(&inet, &it_type, &idata, &ilen) > 0) {
            uint32_t v;
            /* IFLA_INET6_CONF: an s32 per DEVCONF_*, from 0 (ipv6_store_devconf) */
            if (fam == AF_INET6 && it_type == IFLA_INET6_CONF &&
                ilen >= (DEVCONF_DISABLE_POLICY + 1) * sizeof(uint32_t)) {
                memcpy(&v, idata + DEVCONF_DISABLE_POLICY * sizeof(uint32_t), sizeof(v));
                conf |= v != 0 ? SS_V6_NOPOLICY : 0;
            }
            if (fam != AF_INET || it_type != IFLA_INET_CONF || ilen < IPV4_DEVCONF_NOPOLICY * sizeof(uint32_t)) {
                continue;
            }
            memcpy(&v, idata + (IPV4_DEVCONF_NOXFRM - 1) * sizeof(uint32_t), sizeof(v));
            conf |= v != 0 ? SS_LO_NOXFRM : 0;
            memcpy(&v, idata + (IPV4_DEVCONF_NOPOLICY - 1) * sizeof(uint32_t), sizeof(v));
            conf |= v != 0 ? SS_LO_NOPOLICY : 0;
        }
    }
    return conf;
}

typedef struct {
    int is_xfrm;
    int is_vrf; /* IFLA_INFO_KIND "vrf": an l3mdev master */
    uint32_t if_id;
    int link;        /* IFLA_LINK: an XFRM interface's underlying device (xfrmi_get_iflink: xi->p.link) */
    char name[IFNAMSIZ]; /* IFLA_IFNAME */
    int other_netns; /* IFLA_LINK_NETNSID: the interface's policies live in another namespace */
    int inet_conf;   /* SS_LO_* bits of its IPv4 devconf */
} link_info;

static int on_link(void *vctx, uint16_t type, uint16_t flags, const void *payload, size_t len)
{
    link_info *li = vctx;
    attr_iter it, inner, data_it;
    uint16_t at, it_type, dt;
    const uint8_t *data, *idata, *ddata;
    size_t dlen, ilen, ddlen;

    (void)flags;
    if (type != RTM_NEWLINK || len < sizeof(struct ifinfomsg)) {
        return 0;
    }
    it.p = (const uint8_t *)payload + NLMSG_ALIGN(sizeof(struct ifinfomsg));
    it.left = len > NLMSG_ALIGN(sizeof(struct ifinfomsg)) ? len - NLMSG_ALIGN(sizeof(struct ifinfomsg)) : 0;
    while (attr_next(&it, &at, &data, &dlen) > 0) {
        if (at == IFLA_LINK_NETNSID) {
            li->other_netns = 1;
        }
        if (at == IFLA_LINK && dlen >= sizeof(int)) {
            memcpy(&li->link, data, sizeof(int));
        }
        if (at == IFLA_IFNAME && dlen > 0) {
            memcpy(li->name, data, dlen < IFNAMSIZ - 1 ? dlen : IFNAMSIZ - 1);
        }
        if (at == IFLA_AF_SPEC) {
            li->inet_conf = inet_conf_of(data, dlen);
        }
        if (at != IFLA_LINKINFO) {
            continue;
        }
        inner.p = data;
        inner.left = dlen;
        while (attr_next(&inner, &it_type, &idata, &ilen) > 0) {
            if (it_type == IFLA_INFO_KIND) {
                li->is_xfrm = ilen >= 5 && memcmp(idata, "xfrm", 5) == 0;
                li->is_vrf = ilen >= 4 && memcmp(idata, "vrf", 4) == 0;
            } else if (it_type == IFLA_INFO_DATA) {
                data_it.p = idata;
                data_it.left = ilen;
                while (attr_next(&data_it, &dt, &ddata, &ddlen) > 0) {
                    if (dt == IFLA_XFRM_IF_ID && ddlen >= sizeof(uint32_t)) {
                        memcpy(&li->if_id, ddata, sizeof(uint32_t));
                    }
                }
            }
        }
    }
    return 0;
}

/* RTM_GETLINK for one device: 0 and *li, or -1 on error. */
static int link_get(int ifindex, link_info *li, secsock_error *err)
{
    struct ifinfomsg ifi;

    memset(&ifi, 0, sizeof(ifi));
    memset(li, 0, sizeof(*li));
    ifi.ifi_family = AF_UNSPEC;
    ifi.ifi_index = ifindex;
    return nl_request(NETLINK_ROUTE, RTM_GETLINK, NLM_F_ACK, &ifi, sizeof(ifi), on_link, li, "RTM_GETLINK", err);
}

static int conf_link(ss_flow *f, int ifindex, int *conf, int *is_vrf, secsock_error *err);

/* Is the socket bound to a VRF master (an l3mdev)? 1, 0, or -1 on error. Asked only where the outbound device
 * matters (a selector that names a device, an if_id), from the thread's link cache (conf_link) while fresh. */
static int bound_to_l3mdev(ss_flow *f, secsock_error *err)
{
    int bound, conf, is_vrf;

    if (flow_bound_ifindex(f, &bound, err) != 0) {
        return -1;
    }
    if (bound <= 0) {
        return 0;
    }
    return conf_link(f, bound, &conf, &is_vrf, err) != 0 ? -1 : is_vrf;
}

/*
 * The if_id of the XFRM interface the flow is routed through (0 when the route leaves by another kind of
 * device): the kernel looks up policies with that if_id for such a flow, and only for it. Asked only when
 * some policy has an if_id. The answer for both directions: the peer's packets are taken to come back
 * through the same interface (its SAs carry its if_id). 0, SS_DEV_UNKNOWN when the device the socket sends
 * by cannot be told (flow_out_dev_knowable: the same rule as a selector's device), or -1 on error.
 */
int resolve_if_id(ss_flow *f, secsock_error *err)
{
    link_info li;
    int rc;

    if (f->if_id_known) {
        return f->if_id_known == SS_KNOW_NO ? SS_DEV_UNKNOWN : 0;
    }
    if ((rc = flow_out_dev_knowable(f, err)) < 0) {
        return -1;
    }
    if (rc == 0 || (rc = resolve_oif(f, err)) == SS_DEV_UNKNOWN) {
        f->if_id_known = SS_KNOW_NO;
        return SS_DEV_UNKNOWN;
    }
    if (rc != 0 || link_get(f->oif, &li, err) != 0) {
        return -1;
    }
    if (li.is_xfrm && li.other_netns) {
        return secsock_error_set(err, SECSOCK_ERR_UNSUPPORTED, 0, 0, "if_id",
                                 "the flow is routed through an XFRM interface whose policies live in another "
                                 "network namespace, which secsock does not read");
    }
    f->if_id = li.is_xfrm ? li.if_id : 0;
    f->if_id_link = li.is_xfrm ? li.link : 0;
    f->if_id_known = SS_KNOW_YES;
    return 0;
}

/* A boolean sysctl of the calling thread's network namespace (/proc/sys/net follows the reading thread's
 * namespace; thread_ns_ok has checked it is the socket's): 1 set, 0 not, -1 on error. */
static int sysctl_flag(const char *path, secsock_error *err)
{
    char buf[16];
    ssize_t n;
    int fd;

    if (ss_may_wait(err) != 0 || thread_ns_ok("open(/proc/sys/net)", err) != 0) {
        return -1;
    }
    assert(!t_ns.at_once);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        /* The IPv4 settings exist on every kernel: ENOENT there means /proc/sys is not mounted (a sandbox), and
         * nothing was learned. An IPv6 one is absent, and disables nothing, only when IPv6 is (no
         * /proc/sys/net/ipv6 at all, while /proc/sys/net/ipv4 is there). */
        int open_errno = errno;
        if (open_errno == ENOENT && strncmp(path, "/proc/sys/net/ipv6/", 19) == 0 &&
            access("/proc/sys/net/ipv6", F_OK) != 0 && errno == ENOENT && access("/proc/sys/net/ipv4", F_OK) == 0) {
            return 0;
        }
        return os_error(err, open_errno, "open", path);
    }
    n = read(fd, buf, sizeof(buf) - 1);
    (void)close(fd);
    if (n <= 0) {
        return n < 0 ? os_error(err, errno, "read", path)
                     : secsock_error_set(err, SECSOCK_ERR_OS, EIO, 0, "read", "%s is empty", path);
    }
    buf[n] = '\0';
    return atoi(buf) != 0;
}

/*
 * What flow_xfrm_disabled learns from the kernel, kept per thread for SS_XCHECK_INTERVAL_MS (by ss_clock_ms)
 * and keyed by the namespace the query answers for: `all`'s three settings, a few devices' IPv4 devconf and
 * whether a few peers are local. None of these sends a notification (a sysctl write does not; an address
 * change does, on a group the snapshot does not listen to), so a steady secured query asks nothing and a
 * change is seen within SS_XCHECK_INTERVAL_MS (README, "How the answer is read"). Per thread: no lock, and a
 * fork child's copy is the forking thread's, facts of a namespace that the key still names. The key is the
 * socket's netns cookie with the namespace's dev+ino (a new namespace may get a freed one's inode; the cookie
 * tells them apart from Linux 5.14, and on older kernels the 1 s bounds the mix-up). SS_CONF_NETNS
 * namespaces are kept; a fifth takes the least recently used one's place. Whether a peer is one of the
 * host's addresses is kept per route_key: local_key_of's while the namespace's rules and routes make the
 * socket's other settings irrelevant, route_key_of's (all the route is asked with) otherwise.
 */
#define SS_CONF_PEERS 16
#define SS_CONF_DEVS 4
enum { CONF_ALL_V4_OUT, CONF_ALL_V4_IN, CONF_ALL_V6_IN, CONF_ALL_N };
typedef struct {
    int valid;
    int64_t at;
} conf_stamp;
/* Everything route_get and flow_oif_hint give the kernel for an IPv4 route toward the peer: what a kept
 * answer is keyed by (conf_local_dev, conf_out_dev), so that two sockets differing in any of it (a uidrange,
 * dsfield, ipproto or port rule) never share one. Built zeroed (route_key_of), compared whole. */
typedef struct {
    uint8_t peer[4], local[4];
    uint32_t mark, uid;
    int hint; /* flow_oif_hint */
    uint16_t lport, pport;
    uint8_t tos, proto, wild; /* wild: ss_flow.local_wild, asked without RTA_SRC */
    uint8_t plain;            /* local_key_of's: no mark, uid or TOS (never equal to route_key_of's), and no
                               * ports or protocol unless a rule reads them (conf_rules.v4_l4) */
} route_key;

#define SS_LOCAL_PREFIXES 32 /* the local table's local routes conf_rules keeps (an address, a loopback prefix) */
typedef struct {
    uint8_t addr[4];
    uint8_t len;
} v4_prefix;

/* What the namespace's `ip rule` (both families) and IPv4 route dumps say (conf_rules_of), kept as the other
 * facts are. */
typedef struct {
    int uid;         /* some rule has a uidrange (FRA_UID_RANGE) */
    int rules_plain; /* the rules allow v4_plain (rule_scan); the routes are then dumped for conf_local_dev */
    int v4_plain; /* whether an IPv4 peer is one of the host's addresses depends on nothing of the socket's but
                   * its addresses and device, and its ports and protocol while v4_l4 (local_key_of) */
    int v4_l4;    /* some IPv4 rule reads the protocol or ports (FRA_IP_PROTO, FRA_SPORT_RANGE, FRA_DPORT_RANGE) */
    unsigned n_local; /* v4_plain: the local table's RTN_LOCAL routes, in local[] up to SS_LOCAL_PREFIXES */
    v4_prefix local[SS_LOCAL_PREFIXES];
    int scope_matters; /* v4_plain: a route a link-scoped lookup passes over may hide a local prefix (route_scan) */
    unsigned n_lo;     /* the routes of another type than local with a nexthop by loopback (route_scan), in lo[]
                        * up to SS_LOCAL_PREFIXES; more (SS_PREFIXES_ALL) while the routes were not read */
    v4_prefix lo[SS_LOCAL_PREFIXES];
} conf_rules;
#define SS_PREFIXES_ALL (SS_LOCAL_PREFIXES + 1) /* a prefix count local_prefix_holds reads as "holds all" */

typedef struct conf_ns {
    uint64_t used;   /* t_conf.tick at its last use: the least recently used is reused */
    uint64_t cookie; /* SO_NETNS_COOKIE, never reused (an nsfs inode is, once its namespace is gone); 0 unknown */
    dev_t dev;
    ino_t ino;
    conf_stamp all_at[CONF_ALL_N];
    int all[CONF_ALL_N];
    struct {
        conf_stamp at;
        int ifindex, conf;
        int is_vrf;            /* an l3mdev master (bound_to_l3mdev) */
        char name[IFNAMSIZ];   /* with ifindex, the key: an index can be reused within the interval */
    } devs[SS_CONF_DEVS];
    struct {
        conf_stamp at;
        route_key key;
        int dev; /* as ss_flow.local_dev: -1 not local */
        int oif; /* the route's device (resolve_oif's answer when key is route_key_of's) */
    } peers[SS_CONF_PEERS];
    conf_stamp links_at;
    int links_conf; /* SS_LO_* set on any device but loopback (conf_links) */
    conf_stamp rules_at, routes_at; /* routes_at: v4_plain and local[] (read since the rules were) */
    conf_rules rules; /* what the `ip rule` and IPv4 route dumps say (conf_rules_of) */
    struct {
        conf_stamp at;
        route_key key;
        int oif; /* the route's answer */
    } routes[SS_CONF_PEERS];
    unsigned next_dev, next_peer, next_route;
} conf_ns;
#define SS_CONF_NETNS 4 /* namespaces a thread keeps this for (a server may answer for sockets in several) */
typedef struct {
    conf_ns e[SS_CONF_NETNS];
    uint64_t tick;
} conf_thread;
static __thread conf_thread t_conf; /* one thread-local object, its address taken once: one __tls_get_addr */

/* A cached fact is read from the kernel: counted (a test hook reads the count), unless the query must not wait
 * (secsock_query_at_once: refused before anything is asked or changed). 0, or -1 with err set. */
static int conf_ask(secsock_error *err)
{
    if (ss_may_wait(err) != 0) {
        return -1;
    }
    g.conf_asks++;
    return 0;
}

/* Is a stamp fresh? */
static int conf_fresh(const conf_stamp *st, int64_t now)
{
    return st->valid && now - st->at < SS_XCHECK_INTERVAL_MS;
}

/* Mark a cached fact as read at now (conf_fresh answers for it until the interval is over). */
static void conf_stamp_set(conf_stamp *st, int64_t now)
{
    st->valid = 1;
    st->at = now;
}

/* The thread's cache of f's namespace (the least recently used one emptied for it when there is none), or
 * NULL when f's namespace is unknown. Looked up once per query (f->conf) once the namespace is known: f->ns is
 * set once, by query_locked (finish_flow's route lookups come before it and find no cache, as always), and
 * nothing else in the thread looks another namespace up meanwhile. */
static conf_ns *conf_for(ss_flow *f)
{
    conf_thread *t = &t_conf;
    conf_ns *c = NULL;
    int i;

    if (!f->ns.known) {
        return NULL;
    }
    if (f->conf_looked) {
        return f->conf;
    }
    f->conf_looked = 1;
    for (i = 0; i < SS_CONF_NETNS; i++) {
        conf_ns *e = &t->e[i];
        if (e->used != 0 && e->cookie == f->ns_cookie && e->dev == f->ns.dev && e->ino == f->ns.ino) {
            c = e;
            break;
        }
        if (c == NULL || e->used < c->used) {
            c = e;
        }
    }
    if (i == SS_CONF_NETNS) {
        memset(c, 0, sizeof(*c));
        c->cookie = f->ns_cookie;
        c->dev = f->ns.dev;
        c->ino = f->ns.ino;
    }
    c->used = ++t->tick;
    return f->conf = c;
}

/* The query's clock for the thread's caches (ss_clock_ms, read once per query: query_in_netns gives it the
 * value refresh_locked read). A fact read during the query is stamped with this earlier time, so it is kept for
 * at most SS_XCHECK_INTERVAL_MS after it was read; a fact is also judged fresh against this time, so one may be
 * used up to the query's own duration (milliseconds: a cross-check, a drain) past its interval (outside review
 * of i14-cpath, item 2: the coarse clock's tick is already 1-4 ms). */
static int64_t flow_now(ss_flow *f)
{
    if (!f->now_read) {
        f->now = ss_clock_ms();
        f->now_read = 1;
    }
    return f->now;
}

/* `all`'s setting i: 1 set, 0 not, -1 on error; from the cache while fresh. */
static int conf_all(ss_flow *f, int i, secsock_error *err)
{
    static const char *const paths[CONF_ALL_N] = {"/proc/sys/net/ipv4/conf/all/disable_xfrm",
                                                  "/proc/sys/net/ipv4/conf/all/disable_policy",
                                                  "/proc/sys/net/ipv6/conf/all/disable_policy"};
    int64_t now = flow_now(f);
    conf_ns *c = conf_for(f);
    int v;

    if (c != NULL && conf_fresh(&c->all_at[i], now)) {
        return c->all[i];
    }
    if (conf_ask(err) != 0) {
        return -1;
    }
    v = sysctl_flag(paths[i], err);
    if (v >= 0 && c != NULL) {
        c->all[i] = v;
        conf_stamp_set(&c->all_at[i], now);
    }
    return v;
}

/* The route_key of f's IPv4 route toward the peer asked from device hint: 0, or -1 on error. */
static int route_key_of(ss_flow *f, int hint, route_key *key, secsock_error *err)
{
    memset(key, 0, sizeof(*key));
    if (flow_route_keys(f, err) != 0) {
        return -1;
    }
    memcpy(key->peer, f->peer, 4);
    memcpy(key->local, f->local, 4);
    key->mark = flow_mark(f);
    key->uid = f->uid;
    key->hint = hint;
    key->lport = f->lport;
    key->pport = f->pport;
    key->tos = f->tos;
    key->proto = (uint8_t)f->proto;
    key->wild = (uint8_t)f->local_wild;
    return 0;
}

static int conf_rules_of(ss_flow *f, int routes, conf_rules *rules, secsock_error *err);

/* Does one of the n local prefixes hold prefix p (p as long or longer, and inside it)? 1 also when there were
 * more than the SS_LOCAL_PREFIXES kept. */
static int local_prefix_holds(const v4_prefix *local, unsigned n, const v4_prefix *p)
{
    unsigned i;

    if (n > SS_LOCAL_PREFIXES) {
        return 1;
    }
    for (i = 0; i < n; i++) {
        uint32_t a, b, mask = local[i].len == 0 ? 0 : 0xffffffffu << (32 - local[i].len);
        memcpy(&a, p->addr, 4);
        memcpy(&b, local[i].addr, 4);
        if (p->len >= local[i].len && ((ntohl(a) ^ ntohl(b)) & mask) == 0) {
            return 1;
        }
    }
    return 0;
}

/*
 * While the rules and routes are plain (conf_rules.v4_plain), can any local route cover the IPv4 address?
 * Only a route of type local makes an output route RTN_LOCAL (ip_route_output_key_hash_rcu, a peer of
 * 0.0.0.0 apart), and then all of them are in the local table, whose rule comes first: an address none of
 * them covers is not one of the host's whatever device the socket sends by (the route's oif only passes over
 * routes), so that device is not read. 1 also when the table had more than the kept ones.
 */
static int local_route_covers(const conf_rules *rules, const uint8_t *addr)
{
    v4_prefix host;

    memcpy(host.addr, addr, 4);
    host.len = 32;
    return local_prefix_holds(rules->local, rules->n_local, &host);
}

/*
 * The key of whether f's IPv4 peer is one of the host's addresses, asked from device hint, while the
 * namespace's rules and routes are plain (rules->v4_plain): the peer, the local address (and whether it is
 * the wildcard's), the device hint, and the ports and protocol only while some IPv4 rule reads them
 * (rules->v4_l4). The local rule comes first and its table holds every local route, none of them by TOS
 * or scoped below link, so fib_table_lookup there finds the same route whatever the flow's TOS, and no
 * later table holds one; and no rule reads the mark, uid or DSCP (fib_rule_match, fib4_rule_match). Mark,
 * uid and TOS then cannot change the answer, and are neither read nor part of the key. Nor can the ports
 * and protocol while no rule reads them: fib_table_lookup reads none (the address, TOS, scope and oif), and
 * when the local table misses (its local route's device is not the hint's, or a throw route there) the
 * later rules are tried, where only fib4_rule_match's ip_proto, sport and dport read them; multipath
 * hashing on them (fib_select_path) comes after the lookup and only for a route that is not local
 * (ip_route_output_key_hash_rcu: RTN_LOCAL goes straight to make_route), whose answer here is "not local"
 * whichever nexthop it picks. With such a rule one port's flow may meet `prohibit` or `unreachable`, or a
 * table with no route toward the peer, where another port's finds it not local: an error for that flow
 * alone (unless a hint that is no VRF master makes a route by it anyway: ip_route_output_key_hash_rcu), so
 * they are kept in the key. (ip_route_output_key_hash_rcu reads the protocol before any lookup too: an oif
 * given and IGMP make a route by that device at once, never RTN_LOCAL; not here, as route_get sends
 * RTA_IP_PROTO for TCP and UDP only, inet_rtm_getroute defaulting to UDP and rtm_getroute_parse_ip_proto
 * accepting TCP, UDP and ICMP: send no other protocol, nor reuse this key, without keying by the protocol.)
 * Its scope can change the answer: with no custom rule the local table is merged into main, and a
 * link-scoped lookup (SO_DONTROUTE) passes over a main route via a gateway inside a local prefix and finds
 * the prefix (conf_local_dev asks flow_dontroute).
 */
static void local_key_of(const ss_flow *f, const conf_rules *rules, int hint, route_key *key)
{
    memset(key, 0, sizeof(*key));
    memcpy(key->peer, f->peer, 4);
    memcpy(key->local, f->local, 4);
    key->hint = hint;
    if (rules->v4_l4) {
        key->lport = f->lport;
        key->pport = f->pport;
        key->proto = (uint8_t)f->proto;
    }
    key->wild = (uint8_t)f->local_wild;
    key->plain = 1;
}

/* conf_local_dev's route, asked as resolve_oif asks it (route_key_of's key: the peer, the local address, the
 * hint, after flow_route_unknowable), answers resolve_oif too: its device is the flow's (f->oif), so that
 * remote_xfrm_disabled's conf_out_dev asks no second time. A local_key_of key leaves out what the route may
 * depend on for a peer that is not local (a multipath route's hash reads the ports): not kept. */
static void local_dev_oif(ss_flow *f, const route_key *key, int oif)
{
    if (!key->plain && oif > 0) {
        f->oif = oif;
    }
}

/*
 * The device an IPv4 peer that is one of the host's addresses is reached by (as ss_flow.local_dev), or
 * SS_DEV_UNKNOWN, or 0 on error. The route is asked from the device the socket sends by (flow_oif_hint, as
 * resolve_oif): fib_table_lookup passes over a local route whose device is not the flow's oif, so a socket
 * bound to vb reaches vc's address by vb, not lo, and a socket bound to a VRF master looks in the VRF's table.
 * When that device cannot be read (a multicast peer's IP_MULTICAST_IF) the answer is not decidable. Kept per
 * route_key (all route_get sends: review of i14-route, item 5), or per local_key_of's while the rules and
 * routes allow it; an SO_DONTROUTE socket's is not decidable toward a peer a local route covers while a route
 * a link-scoped lookup passes over lies inside a local prefix. An IPv4 UDP message's IP_PKTINFO
 * device is not seen here: the socket's own device is asked, as for a message without one (README).
 */
static int conf_local_dev(ss_flow *f, secsock_error *err)
{
    int64_t now = flow_now(f);
    conf_ns *c;
    conf_rules rules;
    route_answer ra;
    int i, hint, rc;
    route_key key;

    if (conf_rules_of(f, 1, &rules, err) != 0) {
        return 0;
    }
    if (rules.v4_plain && !flow_v4_multicast(f) && !addr_any(f->peer, AF_INET) && !local_route_covers(&rules, f->peer)) {
        return -1;
    }
    if ((rc = flow_oif_hint(f, &hint, err)) != 0) {
        return rc == SS_DEV_UNKNOWN ? SS_DEV_UNKNOWN : 0;
    }
    if (rules.v4_plain) {
        /* With no custom rule the local table is merged into main (fib_lookup without the rules): a
         * link-scoped lookup passes over a main route via a gateway inside a local prefix and finds the
         * prefix, which RTM_GETROUTE does not ask (review of i14-speed3, item 1). Read only toward a peer a
         * local route covers, while such a route exists (v4_routes_plain). */
        if (rules.scope_matters && (rc = flow_dontroute(f, err)) != 0) {
            return rc > 0 ? SS_DEV_UNKNOWN : 0;
        }
        local_key_of(f, &rules, hint, &key);
    } else if ((rc = flow_route_unknowable(f, err)) != 0) {
        return rc > 0 ? SS_DEV_UNKNOWN : 0;
    } else if (route_key_of(f, hint, &key, err) != 0) {
        return 0;
    }
    c = conf_for(f);
    if (c != NULL) {
        for (i = 0; i < SS_CONF_PEERS; i++) {
            if (conf_fresh(&c->peers[i].at, now) && memcmp(&c->peers[i].key, &key, sizeof(key)) == 0) {
                local_dev_oif(f, &key, c->peers[i].oif);
                return c->peers[i].dev;
            }
        }
    }
    if (conf_ask(err) != 0) {
        return 0; /* refused at once: an error is 0 here (-1 says the peer is not local) */
    }
    if (route_get(f, f->peer, f->local, hint, &ra, err) != 0) {
        return 0;
    }
    local_dev_oif(f, &key, ra.oif);
    if (c != NULL) {
        i = (int)(c->next_peer++ % SS_CONF_PEERS);
        memcpy(&c->peers[i].key, &key, sizeof(key)); /* with its padding: looked up by memcmp */
        c->peers[i].dev = ra.type == RTN_LOCAL && ra.oif > 0 ? ra.oif : -1;
        c->peers[i].oif = ra.oif;
        conf_stamp_set(&c->peers[i].at, now);
    }
    return ra.type == RTN_LOCAL && ra.oif > 0 ? ra.oif : -1;
}

/* Device ifindex's IPv4 devconf bits (SS_LO_*) into *conf and whether it is a VRF master into *is_vrf (one
 * RTM_GETLINK answers both): 0, or -1 on error. From the thread's cache while fresh, keyed by the index and
 * the device's name now (SIOCGIFNAME on the socket: its namespace): `ip link add ... index N` or a device
 * moved in from another namespace may take a deleted device's index within the interval (issue 14 review 2,
 * item 11), and a VRF master must not be read as the device that had its index. */
static int conf_link(ss_flow *f, int ifindex, int *conf, int *is_vrf, secsock_error *err)
{
    int64_t now = flow_now(f);
    conf_ns *c = conf_for(f);
    struct ifreq ifr;
    link_info li;
    int i;

    memset(&ifr, 0, sizeof(ifr));
    if (c != NULL) {
        /* Loopback's index is its own for the namespace's life (loopback_net_init registers it first, as
         * LOOPBACK_IFINDEX; it is never unregistered, nor moved out: NETIF_F_NETNS_LOCAL), so no other
         * device can take it: its name, which a rename may change, is not asked. */
        ifr.ifr_ifindex = ifindex;
        if (ifindex != 1 && ioctl(f->sock, SIOCGIFNAME, &ifr) != 0) {
            return os_error(err, errno, "ioctl(SIOCGIFNAME)", NULL);
        }
        for (i = 0; i < SS_CONF_DEVS; i++) {
            if (conf_fresh(&c->devs[i].at, now) && c->devs[i].ifindex == ifindex &&
                (ifindex == 1 || strncmp(c->devs[i].name, ifr.ifr_name, IFNAMSIZ) == 0)) {
                *conf = c->devs[i].conf;
                *is_vrf = c->devs[i].is_vrf;
                return 0;
            }
        }
    }
    if (conf_ask(err) != 0) {
        return -1;
    }
    if (link_get(ifindex, &li, err) != 0) {
        return -1;
    }
    *conf = li.inet_conf;
    *is_vrf = li.is_vrf;
    if (c != NULL) {
        i = (int)(c->next_dev++ % SS_CONF_DEVS);
        c->devs[i].ifindex = ifindex;
        memcpy(c->devs[i].name, li.name, IFNAMSIZ); /* the name the answer came with */
        c->devs[i].conf = li.inet_conf;
        c->devs[i].is_vrf = li.is_vrf;
        conf_stamp_set(&c->devs[i].at, now);
    }
    return 0;
}

/* The IPv4 devconf bits (SS_LO_*) of device ifindex into *conf: 0, or -1 on error. */
static int conf_dev(ss_flow *f, int ifindex, int *conf, secsock_error *err)
{
    int is_vrf;
    return conf_link(f, ifindex, conf, &is_vrf, err);
}

/*
 * An rtnetlink dump whose callback fills ctx (size bytes, set to init before each try): 0, or -1 on error
 * (err unset when fn stopped the dump, which records no error). A device, rule or route added or removed
 * during it (NLM_F_DUMP_INTR, nl_request's -3: veths of containers coming and going) makes it inconsistent:
 * it is asked once more before the query raises EAGAIN (review of i14-route, item 10).
 */
static int route_dump(uint16_t type, const void *body, size_t blen, ss_nl_fn fn, void *ctx, const void *init,
                      size_t size, const char *call, secsock_error *err)
{
    int rc, tries;

    for (tries = 0;; tries++) {
        memcpy(ctx, init, size);
        rc = nl_request(NETLINK_ROUTE, type, NLM_F_DUMP, body, blen, fn, ctx, call, err);
        if (rc == 0 || rc != -3 || tries > 0) {
            return rc == 0 ? 0 : -1;
        }
        secsock_error_clear(err);
    }
}

/* A dump's RTM_NEWLINK: OR the device's SS_LO_* bits into *vctx, loopback's (LOOPBACK_IFINDEX) IPv4 ones
 * apart (an IPv4 flow over lo is one to a local peer, which flow_xfrm_disabled reads itself; an IPv6
 * address may live on lo, and its device's disable_policy counts). */
static int on_link_any(void *vctx, uint16_t type, uint16_t flags, const void *payload, size_t len)
{
    int *conf = vctx;
    struct ifinfomsg ifi;
    link_info li;

    if (type != RTM_NEWLINK || len < sizeof(ifi)) {
        return 0;
    }
    memcpy(&ifi, payload, sizeof(ifi));
    memset(&li, 0, sizeof(li));
    (void)on_link(&li, type, flags, payload, len);
    *conf |= ifi.ifi_index == 1 ? li.inet_conf & SS_V6_NOPOLICY : li.inet_conf;
    return 0;
}

/* The SS_LO_* bits set on any device of the namespace but loopback, into *conf: 0, or -1 on error. One
 * RTM_GETLINK dump, kept as the other settings are (conf_for): a steady query asks nothing. */
static int conf_links(ss_flow *f, int *conf, secsock_error *err)
{
    int64_t now = flow_now(f);
    conf_ns *c = conf_for(f);
    uint8_t body[NLMSG_ALIGN(sizeof(struct ifinfomsg)) + RTA_SPACE(sizeof(uint32_t))];
    struct ifinfomsg ifi;
    size_t off = NLMSG_ALIGN(sizeof(ifi));
    uint32_t ext = RTEXT_FILTER_SKIP_STATS;
    int v = 0;
    static const int none = 0;

    *conf = 0;
    if (c != NULL && conf_fresh(&c->links_at, now)) {
        *conf = c->links_conf;
        return 0;
    }
    if (conf_ask(err) != 0) {
        return -1;
    }
    memset(body, 0, sizeof(body));
    memset(&ifi, 0, sizeof(ifi));
    ifi.ifi_family = AF_UNSPEC;
    memcpy(body, &ifi, sizeof(ifi));
    /* Without the counters (rtnl_fill_stats, IFLA_INET6_STATS; kernels before the flag send them anyway):
     * only the devconf is read, and the dump is a fraction of the size. */
    add_rta(body, &off, IFLA_EXT_MASK, &ext, sizeof(ext));
    if (route_dump(RTM_GETLINK, body, off, on_link_any, &v, &none, sizeof(v), "RTM_GETLINK", err) != 0) {
        return -1;
    }
    *conf = v;
    if (c != NULL) {
        c->links_conf = v;
        conf_stamp_set(&c->links_at, now);
    }
    return 0;
}

typedef struct {
    int uid;        /* some rule (either family) has a uidrange */
    int v4_seen;    /* an IPv4 rule was met: the first one is decided */
    int v4_plain;   /* so far: the first IPv4 rule is the bare prio-0 `lookup local`, no IPv4 rule selects on
                     * what local_key_of always leaves out (mark, uid, DSCP) */
    int v4_l4;      /* some IPv4 rule selects on the protocol or ports (local_key_of then keys by them) */
} rule_scan;

/*
 * A dump's RTM_NEWRULE (fib_nl_fill_rule puts each selector only when set). The uid: FRA_UID_RANGE. For
 * IPv4: fib_rule_match and fib4_rule_match compare the flow's mark (FRA_FWMARK, FRA_FWMASK), uid
 * (FRA_UID_RANGE) and DSCP (the header's tos; FRA_DSCP and later attributes are not known here and count as
 * selecting; on 6.18 a single port's rule also carries FRA_SPORT_MASK or FRA_DPORT_MASK, later ones); the
 * other selectors compare what local_key_of keeps (addresses, device; the protocol and ports, FRA_IP_PROTO,
 * FRA_SPORT_RANGE and FRA_DPORT_RANGE, which v4_l4 records: fib4_rule_match reads them, and local_key_of
 * keys by them only while some IPv4 rule has one) or nothing a socket sets (iif: an output lookup's is
 * loopback). The rules come in priority order, so the first IPv4 one is the first the kernel tries:
 * v4_plain wants it to be the bare priority-0 rule to the local table (fib_default_rules_init's), which
 * then answers for every host address before any other rule is met.
 * These rule conditions (no fwmark, uid or DSCP rule anywhere; the bare local rule first) are stronger than
 * the shortcut needs: what makes it sound is the route scan (on_v4_route: no TOS route, no local route
 * outside the local table, none there scoped below link; SO_DONTROUTE read while a route scoped below link
 * lies inside a local prefix), since a later rule can only lead to tables without local routes. Do not
 * loosen the route scan on the strength of the rule conditions (review of i14-speed3, item 5).
 */
static int on_rule(void *vctx, uint16_t type, uint16_t flags, const void *payload, size_t len)
{
    rule_scan *rs = vctx;
    struct fib_rule_hdr frh;
    attr_iter it;
    uint16_t at;
    const uint8_t *data;
    size_t dlen;
    uint32_t table, prio = 0;
    int selects = 0, l4 = 0, first;

    (void)flags;
    if (type != RTM_NEWRULE || len < NLMSG_ALIGN(sizeof(frh))) {
        return 0;
    }
    memcpy(&frh, payload, sizeof(frh));
    table = frh.table;
    first = frh.family == AF_INET && !rs->v4_seen;
    it.p = (const uint8_t *)payload + NLMSG_ALIGN(sizeof(frh));
    it.left = len - NLMSG_ALIGN(sizeof(frh));
    while (attr_next(&it, &at, &data, &dlen) > 0) {
        rs->uid |= at == FRA_UID_RANGE;
        selects |= at == FRA_FWMARK || at == FRA_FWMASK || at == FRA_UID_RANGE || at > FRA_DPORT_RANGE;
        l4 |= at == FRA_IP_PROTO || at == FRA_SPORT_RANGE || at == FRA_DPORT_RANGE;
        if (at == FRA_TABLE && dlen >= sizeof(table)) {
            memcpy(&table, data, sizeof(table));
        } else if (at == FRA_PRIORITY && dlen >= sizeof(prio)) {
            memcpy(&prio, data, sizeof(prio));
        } else if (first && at != FRA_PROTOCOL && at != FRA_PAD &&
                   !(at == FRA_SUPPRESS_PREFIXLEN && dlen >= 4 && memcmp(data, "\xff\xff\xff\xff", 4) == 0)) {
            rs->v4_plain = 0; /* the local rule selects on something, or suppresses its answer */
        }
    }
    if (frh.family != AF_INET) {
        return 0;
    }
    if (first) {
        rs->v4_seen = 1;
        rs->v4_plain = prio == 0 && table == RT_TABLE_LOCAL && frh.action == FR_ACT_TO_TBL && frh.dst_len == 0 &&
                       frh.src_len == 0 && frh.tos == 0 && !(frh.flags & FIB_RULE_INVERT) && rs->v4_plain;
    }
    if (selects || frh.tos != 0) {
        rs->v4_plain = 0;
    }
    rs->v4_l4 |= l4;
    return 0;
}

#define SS_ROUTES_READ_MAX 4096 /* IPv4 routes conf_rules_of reads; beyond, v4_plain is not claimed */
#define SS_SKIPPED_ROUTES 64    /* routes a link-scoped lookup passes over route_scan keeps; beyond, all matter */

typedef struct {
    unsigned seen;
    int plain; /* no route has a TOS; RTN_LOCAL only in the local table, none there scoped below link */
    int too_many;
    unsigned n_local;
    v4_prefix local[SS_LOCAL_PREFIXES];
    unsigned n_skipped; /* routes outside the local table scoped below link, in skipped[] up to the maximum */
    v4_prefix skipped[SS_SKIPPED_ROUTES];
    unsigned n_lo; /* routes not local with a nexthop by loopback, outside 127.0.0.0/8 (conf_rules.lo) */
    v4_prefix lo[SS_LOCAL_PREFIXES];
} route_scan;

/* Keep route ra's prefix in list (n so far, up to max; past that only counted). */
static void prefix_keep(v4_prefix *list, unsigned *n, unsigned max, const route_answer *ra)
{
    if ((*n)++ < max) {
        memcpy(list[*n - 1].addr, ra->dst, sizeof(ra->dst));
        list[*n - 1].len = ra->dst_len > 32 ? 32 : ra->dst_len;
    }
}

/*
 * A dump's IPv4 RTM_NEWROUTE. fib_table_lookup passes over a route whose TOS (fa_dscp) is not the flow's,
 * and over one scoped below the flow's (an SO_DONTROUTE socket asks RT_SCOPE_LINK: ip_sock_rt_scope): with a
 * TOS route anywhere, or a local route outside the local table (which the local rule's lookup would not
 * find, and another rule's might, by TOS or scope), or a route in the local table scoped below link, the
 * socket's TOS or SO_DONTROUTE could change whether a peer is local (seen on 6.18: `ip route add local ADDR
 * tos 0x10 dev lo` makes ADDR local for that TOS alone). A main route's scope matters too while the local
 * table is merged into main (no custom rule): the routes scoped below link are kept for v4_routes_plain,
 * and SO_DONTROUTE read when one lies inside a local prefix (conf_local_dev). A larger table than SS_ROUTES_READ_MAX stops the
 * dump (a routing daemon's full table, read every second, would cost more than the getsockopt calls saved).
 */
static int on_v4_route(void *vctx, uint16_t type, uint16_t flags, const void *payload, size_t len)
{
    route_scan *rs = vctx;
    route_answer ra;

    if (type != RTM_NEWROUTE || len < NLMSG_ALIGN(sizeof(struct rtmsg))) {
        return 0;
    }
    if (++rs->seen > SS_ROUTES_READ_MAX) {
        rs->too_many = 1;
        return -1; /* ends the dump: nl_request closes its socket */
    }
    memset(&ra, 0, sizeof(ra));
    (void)on_route(&ra, type, flags, payload, len);
    if (ra.tos != 0 || (ra.type == RTN_LOCAL && ra.table != RT_TABLE_LOCAL) ||
        (ra.table == RT_TABLE_LOCAL && ra.scope < RT_SCOPE_LINK)) {
        rs->plain = 0;
    }
    if (ra.type == RTN_LOCAL && ra.table == RT_TABLE_LOCAL) {
        prefix_keep(rs->local, &rs->n_local, SS_LOCAL_PREFIXES, &ra);
    }
    if (ra.table != RT_TABLE_LOCAL && ra.scope < RT_SCOPE_LINK) {
        prefix_keep(rs->skipped, &rs->n_skipped, SS_SKIPPED_ROUTES, &ra);
    }
    /* A route to addresses that are not the host's whose nexthop is loopback (`ip route add X dev lo`, a
     * multipath route with a `dev lo` nexthop, the broadcast route of an address on lo; an address's prefix
     * route on lo is local: fib_add_ifaddr): __mkroute_output takes DST_NOXFRM from its output device, lo
     * (remote_xfrm_disabled). Peers in 127.0.0.0/8 are read as local already (flow_xfrm_disabled), so lo's
     * own routes there (broadcast 127.255.255.255) are not kept. */
    if (ra.type != RTN_LOCAL && ra.lo_nh && !(ra.dst_len >= 8 && ra.dst[0] == 127)) {
        prefix_keep(rs->lo, &rs->n_lo, SS_LOCAL_PREFIXES, &ra);
    }
    return 0;
}

/* Are the namespace's IPv4 routes plain (route_scan)? Into rules' v4_plain, with the local table's local
 * routes and whether SO_DONTROUTE can matter: while the local table is merged into main (no custom rule) a
 * link-scoped lookup passes over a route scoped below link and may find a local prefix behind it, which only a
 * route as long as or longer than that prefix, inside it, can hide (fib_table_lookup: the longest prefix
 * first). 0, or -1 on error. */
static int v4_routes_plain(conf_rules *rules, secsock_error *err)
{
    static const route_scan init = {.plain = 1};
    route_scan rs;
    struct rtmsg rtm;
    unsigned i;

    memset(&rtm, 0, sizeof(rtm));
    rtm.rtm_family = AF_INET;
    if (g.fail_route_dumps > 0) {
        g.fail_route_dumps--; /* test hook: as if the dump had been interrupted twice */
        return os_error(err, EAGAIN, "RTM_GETROUTE", NULL);
    }
    if (route_dump(RTM_GETROUTE, &rtm, sizeof(rtm), on_v4_route, &rs, &init, sizeof(rs), "RTM_GETROUTE", err) !=
        0) {
        if (!rs.too_many) {
            return -1;
        }
        rs.plain = 0; /* stopped by on_v4_route: not claimed */
        rs.n_lo = SS_PREFIXES_ALL;
    }
    rules->v4_plain = rs.plain;
    rules->n_local = rs.n_local;
    memcpy(rules->local, rs.local, sizeof(rules->local));
    rules->n_lo = rs.n_lo;
    memcpy(rules->lo, rs.lo, sizeof(rules->lo));
    rules->scope_matters = rs.n_skipped > SS_SKIPPED_ROUTES;
    for (i = 0; i < rs.n_skipped && i < SS_SKIPPED_ROUTES && !rules->scope_matters; i++) {
        rules->scope_matters = local_prefix_holds(rs.local, rs.n_local, &rs.skipped[i]);
    }
    return 0;
}

/* What the namespace's rules (both families: one RTM_GETRULE dump, retried once when interrupted) say, and
 * with routes, when they allow it, its IPv4 routes (v4_plain, local[]: only conf_local_dev needs them), into
 * *rules: 0, or -1 on error. Kept as conf_links' answer is; in a namespace not known (conf_for) nothing is
 * kept and the routes are not dumped: v4_plain 0, the full path (review of i14-speed3, item 3). */
static int conf_rules_of(ss_flow *f, int routes, conf_rules *rules, secsock_error *err)
{
    int64_t now = flow_now(f);
    conf_ns *c = conf_for(f);
    static const rule_scan init = {.v4_plain = 1};
    struct fib_rule_hdr frh;
    rule_scan rs;

    if (c != NULL && conf_fresh(&c->rules_at, now)) {
        *rules = c->rules;
    } else {
        if (conf_ask(err) != 0) {
            return -1;
        }
        memset(&frh, 0, sizeof(frh));
        frh.family = AF_UNSPEC;
        if (route_dump(RTM_GETRULE, &frh, sizeof(frh), on_rule, &rs, &init, sizeof(rs), "RTM_GETRULE", err) != 0) {
            return -1;
        }
        memset(rules, 0, sizeof(*rules));
        rules->n_lo = SS_PREFIXES_ALL; /* until the routes are read */
        rules->uid = rs.uid;
        rules->rules_plain = rs.v4_seen && rs.v4_plain;
        rules->v4_l4 = rs.v4_l4;
        if (c != NULL) {
            c->rules = *rules;
            conf_stamp_set(&c->rules_at, now);
            c->routes_at.valid = 0;
        }
    }
    if (!routes || !rules->rules_plain || c == NULL || conf_fresh(&c->routes_at, now)) {
        return 0;
    }
    if (ss_may_wait(err) != 0) {
        return -1; /* before v4_routes_plain, whose failure would be kept as the full path for a second */
    }
    if (v4_routes_plain(rules, err) != 0) {
        /* Routes churning (EAGAIN twice), ENOBUFS, a timeout: the full path, as without the shortcut, and
         * the rules' answer still stands (review of i14-speed3, item 2). */
        secsock_error_clear(err);
        rules->v4_plain = 0;
        rules->n_local = 0;
        rules->n_lo = SS_PREFIXES_ALL;
    }
    c->rules = *rules;
    conf_stamp_set(&c->routes_at, now);
    return 0;
}

/* Does any `ip rule` of the namespace (both families) select on the uid? Into *any: 0, or -1 on error. */
static int conf_uid_rules(ss_flow *f, int *any, secsock_error *err)
{
    conf_rules rules;

    *any = 0;
    if (conf_rules_of(f, 0, &rules, err) != 0) {
        return -1;
    }
    *any = rules.uid;
    return 0;
}

/*
 * The IPv4 route's output device toward the peer (resolve_oif) into *oif: 0, or -1 on error. Kept with the
 * other settings, keyed by everything route_get and flow_oif_hint give the kernel (route_key), which are the
 * socket's and read again (a few getsockopt calls, no netlink) by every query that comes here.
 * SS_XFRM_MAYBE_DISABLED when the device asked from cannot be read (resolve_oif's SS_DEV_UNKNOWN).
 */
static int conf_out_dev(ss_flow *f, int *oif, secsock_error *err)
{
    int64_t now = flow_now(f);
    conf_ns *c;
    int hint = 0, i, rc;
    route_key key;

    *oif = 0;
    if (f->oif >= 0) { /* asked already by this query (flow_sel_dev) */
        *oif = f->oif;
        return 0;
    }
    /* The hint unreadable (a multicast peer's device): SS_XFRM_MAYBE_DISABLED, never a device guessed. */
    if ((rc = flow_oif_hint(f, &hint, err)) != 0) {
        return rc == SS_DEV_UNKNOWN ? SS_XFRM_MAYBE_DISABLED : -1;
    }
    if (route_key_of(f, hint, &key, err) != 0) {
        return -1;
    }
    /* Before the kept answers too: the key holds neither SO_DONTROUTE nor the listener's owner, which
     * resolve_oif refuses on a miss (review of f7d6545, item 3). */
    if ((rc = flow_route_unknowable(f, err)) != 0) {
        return rc > 0 ? SS_XFRM_MAYBE_DISABLED : -1;
    }
    c = conf_for(f);
    if (c != NULL) {
        for (i = 0; i < SS_CONF_PEERS; i++) {
            if (conf_fresh(&c->routes[i].at, now) && memcmp(&c->routes[i].key, &key, sizeof(key)) == 0) {
                *oif = c->routes[i].oif;
                return 0;
            }
        }
    }
    if (conf_ask(err) != 0) {
        return -1;
    }
    if ((rc = resolve_oif(f, err)) != 0) {
        return rc == SS_DEV_UNKNOWN ? SS_XFRM_MAYBE_DISABLED : -1;
    }
    *oif = f->oif;
    if (c != NULL) {
        i = (int)(c->next_route++ % SS_CONF_PEERS);
        memcpy(&c->routes[i].key, &key, sizeof(key)); /* with its padding: looked up by memcmp */
        c->routes[i].oif = f->oif;
        conf_stamp_set(&c->routes[i].at, now);
    }
    return 0;
}

/*
 * May an IPv4 route toward f's peer leave by loopback though the peer is not one of the host's addresses
 * (`ip route add X dev lo`, a multipath route with a `dev lo` nexthop: on_v4_route)?
 * Into *may: 1 when some such route's prefix holds the peer, or while the routes are not read (the rules not
 * plain, a table too large, a failed dump, a namespace not known: conf_rules_of), or toward 255.255.255.255,
 * which leaves by the device holding the source address, lo's for an address on lo (review of f7d6545, item
 * 2); else 0. 0, or -1 on error.
 * An IPv4 UDP socket that sends by lo (SO_BINDTODEVICE, IP_UNICAST_IF: flow_oif_hint) may too: when no route
 * by lo holds the peer, ip_route_output_key_hash_rcu makes one anyway ("assume the destination is on link"),
 * RTCF_LOCAL (__mkroute_output), and the datagrams, sent in the clear by lo's disable_xfrm, reach any local
 * socket on that port, no privilege needed on either side (review of 12e26e8, item 1). A TCP socket's is not
 * read (one more system call on every secured query): its SYN takes that route too, but the connection cannot
 * be made unless a local IP_TRANSPARENT socket (CAP_NET_ADMIN or CAP_NET_RAW) answers from the peer's
 * address (its SYN-ACK's source is not the host's: FLOWI_FLAG_ANYSRC), and the query of an unconnected TCP
 * socket raises. README says so.
 */
static int lo_route_may_cover(ss_flow *f, int *may, secsock_error *err)
{
    static const uint8_t limited_broadcast[4] = {255, 255, 255, 255};
    conf_rules rules;
    v4_prefix host;
    int hint = 0, rc;

    *may = 1;
    if (conf_rules_of(f, 1, &rules, err) != 0) {
        return -1;
    }
    memcpy(host.addr, f->peer, 4);
    host.len = 32;
    *may = local_prefix_holds(rules.lo, rules.n_lo, &host) || memcmp(f->peer, limited_broadcast, 4) == 0;
    if (!*may && flow_udp(f)) {
        /* The hint unreadable (a multicast peer's device): may, and conf_out_dev says "not decidable". A
         * guard only: conf_local_dev answers such a flow "not decidable" before this is asked. */
        if ((rc = flow_oif_hint(f, &hint, err)) == -1) {
            return -1;
        }
        *may = rc == SS_DEV_UNKNOWN || hint == 1;
    }
    return 0;
}

/*
 * An IPv4 flow to a peer elsewhere: does a device's own setting bypass XFRM? Outbound, __mkroute_output gives
 * the route DST_NOXFRM from IN_DEV_ORCONF(NOXFRM) of its output device (rt_dst_alloc; xfrm_lookup_with_ifid
 * then looks no policy up), the route's answer (resolve_oif), unless the socket may choose the device per
 * message (flow_out_dev_knowable). Inbound, ip_rcv_finish_core sets IPSKB_NOPOLICY from IN_DEV_ORCONF(NOPOLICY)
 * of the device the packet ARRIVES by, which xfrm_policy_check honours and which nothing here can know for a
 * remote peer (routing is not symmetric, and any device may receive it). So: only when some device but
 * loopback has the setting (conf_links) is more asked; then outbound reads the output device's
 * (conf_out_dev, conf_dev), and inbound, or outbound by an unknown device, is SS_XFRM_MAYBE_DISABLED ("not
 * decidable", never SECURED).
 * Loopback apart: a route to a peer that is not the host's may still leave by lo (lo_route_may_cover), and
 * lo has both settings by default. The packets then leave without XFRM (seen on 6.18: a plaintext SYN on lo
 * under a required policy, blocked with lo's disable_xfrm 0), and, lo's device being IFF_LOOPBACK,
 * __mkroute_output makes the route RTCF_LOCAL: they are delivered here (rt_dst_alloc: ip_local_deliver),
 * and whatever answers from the peer's address comes back over lo, where ip_rcv_finish_core reads lo's
 * disable_policy. While such a route may hold the peer, its output device is read (conf_out_dev, keyed by
 * all the route is asked with: a multipath route's hash may read the ports), also for an IPv4 UDP socket
 * (asked from the socket's own device, as conf_local_dev asks; a message's IP_PKTINFO is not seen, as
 * README says), and when it is lo, lo's setting answers both ways, as for a local peer. 1, 0,
 * SS_XFRM_MAYBE_DISABLED, or -1.
 */
static int remote_xfrm_disabled(ss_flow *f, int out, secsock_error *err)
{
    int bit = out ? SS_LO_NOXFRM : SS_LO_NOPOLICY, any, conf, oif = 0, rc, lo_may;

    if (conf_links(f, &any, err) != 0 || lo_route_may_cover(f, &lo_may, err) != 0) {
        return -1;
    }
    if (!(any & bit) && !lo_may) {
        return 0;
    }
    if (lo_may) {
        if ((rc = conf_out_dev(f, &oif, err)) != 0) {
            return rc == SS_XFRM_MAYBE_DISABLED ? rc : -1; /* the device asked from cannot be read */
        }
        if (oif == 1) {
            if (conf_dev(f, oif, &conf, err) != 0) {
                return -1;
            }
            if (conf & bit) {
                return 1;
            }
        }
    }
    if (!(any & bit)) {
        return 0;
    }
    if (!out) {
        return SS_XFRM_MAYBE_DISABLED;
    }
    /* Outbound by a device the socket may choose per message (flow_out_dev_knowable: an IPv4 UDP message's
     * IP_PKTINFO, a multicast peer's IP_MULTICAST_IF, a VRF master's slaves), any device so set may be it. */
    if ((rc = flow_out_dev_knowable(f, err)) <= 0) {
        return rc < 0 ? -1 : SS_XFRM_MAYBE_DISABLED;
    }
    if (!lo_may && (rc = conf_out_dev(f, &oif, err)) != 0) { /* with lo_may, asked above */
        return rc == SS_XFRM_MAYBE_DISABLED ? rc : -1;
    }
    if (conf_dev(f, oif, &conf, err) != 0) {
        return -1;
    }
    return (conf & SS_LO_NOXFRM) != 0;
}

/*
 * Does the kernel bypass XFRM for this direction of the flow? IPv4 reads each setting as IN_DEV_ORCONF: the
 * device's or `all`'s. Outbound, __mkroute_output gives the route DST_NOXFRM from IN_DEV_ORCONF(NOXFRM) of
 * its output device, so all.disable_xfrm bypasses XFRM for every IPv4 flow (xfrm_lookup); inbound,
 * ip_rcv_finish_core sets IPSKB_NOPOLICY from IN_DEV_ORCONF(NOPOLICY) of the arriving device, which
 * xfrm_policy_check honours. An IPv4 flow to 127.0.0.0/8, to the socket's own address or to another of the
 * host's addresses runs over lo (or a VRF master), which has both set by default, both ways; a flow to a
 * peer elsewhere: remote_xfrm_disabled. IPv6 has no disable_xfrm; inbound, addrconf_f6i_alloc gives a local
 * address's route DST_NOPOLICY from all.disable_policy or its device's (below).
 * 1 yes, 0 no, SS_XFRM_MAYBE_DISABLED (a device the flow may arrive or leave by has it), SS_DEV_UNKNOWN
 * (whether the peer is reached over loopback cannot be told: conf_local_dev), -1 on error (a setting could
 * not be read). Asked once per query and direction, answered from the thread's cache (t_conf,
 * conf_for) while fresh. Called under g_lock (eval_dir): g.conf_asks and ss_clock_ms.
 */
int flow_xfrm_disabled(ss_flow *f, int dir, secsock_error *err)
{
    int out = dir == XFRM_POLICY_OUT, bit = out ? SS_LO_NOXFRM : SS_LO_NOPOLICY;
    int read_bit = out ? SS_CONF_OUT_READ : SS_CONF_IN_READ, v;

    if (f->family == AF_INET6 && out) {
        return 0;
    }
    if (!(f->lo_conf & read_bit)) {
        v = conf_all(f, f->family == AF_INET6 ? CONF_ALL_V6_IN : out ? CONF_ALL_V4_OUT : CONF_ALL_V4_IN, err);
        if (v < 0) {
            return -1;
        }
        f->lo_conf |= read_bit | (v ? bit : 0);
    }
    if (f->lo_conf & bit) {
        return 1;
    }
    if (f->family == AF_INET6) {
        /* Inbound (outbound returned above). addrconf_f6i_alloc (and addrconf_disable_policy when the sysctl
         * changes) marks a local address's route DST_NOPOLICY from its device's disable_policy, and
         * __xfrm_policy_check2 lets such packets in: seen on 6.18 with the address on one device and the
         * packet arriving by another (the address's device decides, the arriving one does not). Which
         * device holds the address is not read: any device so set makes it not decidable. */
        if (conf_links(f, &v, err) != 0) {
            return -1;
        }
        return (v & SS_V6_NOPOLICY) ? SS_XFRM_MAYBE_DISABLED : 0;
    }
    if (f->local_dev == 0) {
        /* Loopback is always device 1 in its namespace (LOOPBACK_IFINDEX). A peer that is another of the
         * host's addresses is reached over it too (issue 14 review, item 4): the route is RTN_LOCAL and
         * its device lo, or a VRF's master (ip_route_output_key_hash_rcu: dev_out = l3mdev master or
         * loopback_dev), whose settings then apply both ways. Asked only here: a flow that a policy
         * with templates selects. */
        if (f->peer[0] == 127 || addr_eq(f->peer, f->local, AF_INET)) {
            f->local_dev = 1;
        } else {
            v = conf_local_dev(f, err);
            if (v == 0 || v == SS_DEV_UNKNOWN) {
                return v == 0 ? -1 : SS_DEV_UNKNOWN;
            }
            f->local_dev = v;
        }
    }
    if (f->local_dev < 0) {
        return remote_xfrm_disabled(f, out, err); /* a peer elsewhere */
    }
    if (!(f->lo_conf & SS_CONF_LO_READ)) {
        if (conf_dev(f, f->local_dev, &v, err) != 0) {
            return -1;
        }
        f->lo_conf |= SS_CONF_LO_READ;
        f->lo_lo_conf = v;
    }
    return (f->lo_lo_conf & bit) != 0;
}

/* ------------------------------------------------------------------------------------------------------ */
/* Building the flow from the socket                                                                        */

static int sock_of(secsock_fd s, int *fd, secsock_error *err)
{
    if (s > (secsock_fd)INT_MAX) {
        return secsock_error_set(err, SECSOCK_ERR_OS, EBADF, 0, "sock", "the socket descriptor %llu is not valid",
                                 (unsigned long long)s);
    }
    *fd = (int)s;
    return 0;
}

int secsock_socket_kind_of(secsock_fd sock, secsock_socket_kind *kind, secsock_error *err)
{
    int fd = -1, domain = 0, type = 0, protocol = 0;
    socklen_t len;

    memset(kind, 0, sizeof(*kind));
    if (sock_of(sock, &fd, err) != 0) {
        return -1;
    }
    len = sizeof(domain);
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0) {
        return os_error(err, errno, "getsockopt(SO_DOMAIN)", NULL);
    }
    len = sizeof(type);
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) {
        return os_error(err, errno, "getsockopt(SO_TYPE)", NULL);
    }
    len = sizeof(protocol);
    if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &protocol, &len) != 0) {
        return os_error(err, errno, "getsockopt(SO_PROTOCOL)", NULL);
    }
    kind->family = domain == AF_INET ? SECSOCK_FAMILY_INET : domain == AF_INET6 ? SECSOCK_FAMILY_INET6
                                                                                  : SECSOCK_FAMILY_OTHER;
    kind->type = type == SOCK_STREAM ? SECSOCK_TYPE_STREAM : type == SOCK_DGRAM ? SECSOCK_TYPE_DGRAM
                                                                                : SECSOCK_TYPE_OTHER;
    kind->protocol = protocol;
    return 0;
}

static const uint8_t v4mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static int is_v4mapped(const uint8_t *a)
{
    return memcmp(a, v4mapped_prefix, 12) == 0;
}

/* Address and port from a sockaddr of the socket's family. */
static int from_sockaddr(const struct sockaddr_storage *ss, socklen_t len, int family, uint8_t *addr,
                         uint16_t *port)
{
    memset(addr, 0, 16);
    if (family == AF_INET && ss->ss_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
        memcpy(addr, &sin->sin_addr, 4);
        *port = sin->sin_port;
        return 0;
    }
    if (family == AF_INET6 && ss->ss_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
        memcpy(addr, &sin6->sin6_addr, 16);
        *port = sin6->sin6_port;
        return 0;
    }
    return -1;
}

/*
 * The source address the kernel picks toward an IPv6 peer, for a socket bound to the wildcard address: a probe
 * socket's connect() with the socket's mark and device. Its lookup carries the querier's uid, no traffic class,
 * UDP and a random port, and inet6_rtm_getroute's RTA_PREFSRC (ip6_route_get_saddr) ignores the socket's
 * IPV6_ADDR_PREFERENCES, which the probe could copy but RTM_GETROUTE cannot carry: a uidrange, sport, dport or
 * ipproto rule choosing another source is not seen for IPv6 (README). IPv4: source_by_route, which probes
 * only for a socket with SO_DONTROUTE (a link-scoped lookup, which RTM_GETROUTE cannot ask).
 */
static int source_toward_peer(ss_flow *f, int sock_family, const uint8_t *peer16, secsock_error *err)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int fd, bound, rc = -1, one = 1;

    /* A probe socket connected toward the peer: the kernel routes it (and runs its XFRM lookup, which may send
     * an acquire), every query, as no cache keeps the source. Never with the caller's lock held. */
    if (ss_may_wait_flow(err) != 0 || thread_ns_ok("socket", err) != 0) {
        return -1;
    }
    assert(!t_ns.at_once);
    fd = socket(sock_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return os_error(err, errno, "socket", "finding the source address toward the peer: socket()");
    }
    /* The same mark and device as the socket, so policy routing picks the same route. Without them the
     * source could be another route's (a mark rule, a device's table), and the policies matched for a flow
     * the socket never sends: a failure (SO_MARK wants CAP_NET_RAW or CAP_NET_ADMIN, sk_setsockopt) raises. */
    if (flow_mark(f) != 0 && setsockopt(fd, SOL_SOCKET, SO_MARK, &f->mark, sizeof(f->mark)) != 0) {
        os_error(err, errno, "setsockopt(SO_MARK)",
                 "finding the source address toward the peer: setsockopt(SO_MARK)");
        goto out;
    }
    if (flow_bound_ifindex(f, &bound, err) != 0) {
        goto out;
    }
    /* IPv4 probes only for a socket with SO_DONTROUTE (source_by_route): the probe's lookup is link-scoped too. */
    if (sock_family == AF_INET && setsockopt(fd, SOL_SOCKET, SO_DONTROUTE, &one, sizeof(one)) != 0) {
        os_error(err, errno, "setsockopt(SO_DONTROUTE)",
                 "finding the source address toward the peer: setsockopt(SO_DONTROUTE)");
        goto out;
    }
    if (bound > 0 && setsockopt(fd, SOL_SOCKET, SO_BINDTOIFINDEX, &bound, sizeof(bound)) != 0) {
        os_error(err, errno, "setsockopt(SO_BINDTOIFINDEX)",
                 "finding the source address toward the peer: setsockopt(SO_BINDTOIFINDEX)");
        goto out;
    }
    memset(&ss, 0, sizeof(ss));
    if (sock_family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        sin->sin_family = AF_INET;
        memcpy(&sin->sin_addr, peer16, 4);
        sin->sin_port = f->pport;
        len = sizeof(*sin);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        sin6->sin6_family = AF_INET6;
        memcpy(&sin6->sin6_addr, peer16, 16);
        sin6->sin6_port = f->pport;
        sin6->sin6_scope_id = f->peer_scope; /* a link-local peer: without it connect() fails (EINVAL) */
        len = sizeof(*sin6);
    }
    /* connect() on a datagram socket only routes: nothing is sent. */
    if (connect(fd, (struct sockaddr *)&ss, len) != 0) {
        os_error(err, errno, "connect", "finding the source address toward the peer: connect()");
        goto out;
    }
    len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
        os_error(err, errno, "getsockname", NULL);
        goto out;
    }
    {
        uint8_t a[16];
        uint16_t ignored;
        if (from_sockaddr(&ss, len, sock_family, a, &ignored) != 0) {
            secsock_error_set(err, SECSOCK_ERR_OS, EAFNOSUPPORT, 0, "getsockname",
                              "the source address toward the peer has an unexpected family");
            goto out;
        }
        memcpy(f->local, a, 16);
    }
    rc = 0;
out:
    close(fd);
    return rc;
}

/*
 * Facts a socket keeps for life, per socket cookie (SO_COOKIE: unique per socket for the boot, so a reused
 * descriptor number never finds another socket's entry): its type, protocol and network namespace. The
 * addresses are not kept: a datagram socket can connect, reconnect or disconnect, any socket can be bound
 * later, and even a TCP socket can be disconnected (connect with AF_UNSPEC) and connected again elsewhere,
 * so getsockname and getpeername are asked every time. Direct-mapped and bounded: a collision replaces the
 * older entry. Fork children share the parent's sockets, and so the same facts.
 */
#define SS_KIND_CACHE 4096 /* a power of two */
typedef struct {
    uint64_t cookie; /* 0: empty */
    uint64_t ns_cookie;
    int family, type, protocol;
} ss_kind_entry;

static ss_kind_entry g_kind_cache[SS_KIND_CACHE];
uint64_t g_kind_hits;

static size_t kind_slot(uint64_t cookie)
{
    cookie *= 0x9e3779b97f4a7c15ull;
    return (size_t)(cookie >> 32) & (SS_KIND_CACHE - 1);
}

static int kind_cache_get(uint64_t cookie, ss_kind_entry *e)
{
    int hit;
    if (ss_lock(&g_kind_lock) != 0) {
        return 0; /* a miss: the query is refused anyway (ss_lock) */
    }
    *e = g_kind_cache[kind_slot(cookie)];
    hit = e->cookie == cookie;
    if (hit) {
        g_kind_hits++;
    }
    pthread_mutex_unlock(&g_kind_lock);
    return hit;
}

static void kind_cache_put(const ss_kind_entry *e)
{
    if (ss_lock(&g_kind_lock) != 0) {
        return; /* not kept: the query is refused anyway */
    }
    g_kind_cache[kind_slot(e->cookie)] = *e;
    pthread_mutex_unlock(&g_kind_lock);
}

int build_flow(const secsock_query_request *req, ss_flow *f, secsock_error *err)
{
    secsock_socket_kind kind;
    struct sockaddr_storage ss;
    socklen_t len;
    int fd = -1, family, connected, named, named_errno = 0;
    uint8_t local16[16], peer16[16];
    uint64_t sock_cookie = 0;
    socklen_t olen;
    ss_kind_entry entry;

    memset(f, 0, sizeof(*f));
    f->oif = -1;
    f->sel_dev[0] = f->sel_dev[1] = -1;
    if (req == NULL) {
        return secsock_error_set(err, SECSOCK_ERR_ARGUMENT, 0, 0, "request", "no query request was given");
    }
    if (sock_of(req->sock, &fd, err) != 0) {
        return -1;
    }
    /* getsockname gives the family (no SO_DOMAIN); when it fails, SO_DOMAIN says why as it always did. */
    len = sizeof(ss);
    olen = sizeof(sock_cookie);
    if (getsockopt(fd, SOL_SOCKET, SO_COOKIE, &sock_cookie, &olen) != 0 || olen != sizeof(sock_cookie)) {
        sock_cookie = 0; /* not a socket (the calls below say so), or before Linux 4.13 */
    }
    named = getsockname(fd, (struct sockaddr *)&ss, &len) == 0;
    if (!named) {
        named_errno = errno;
    }
    if (sock_cookie != 0 && kind_cache_get(sock_cookie, &entry)) {
        memset(&kind, 0, sizeof(kind));
        kind.family = entry.family == AF_INET ? SECSOCK_FAMILY_INET
                      : entry.family == AF_INET6 ? SECSOCK_FAMILY_INET6 : SECSOCK_FAMILY_OTHER;
        kind.type = entry.type == SOCK_STREAM ? SECSOCK_TYPE_STREAM : entry.type == SOCK_DGRAM ? SECSOCK_TYPE_DGRAM
                                                                                              : SECSOCK_TYPE_OTHER;
        kind.protocol = entry.protocol;
        f->ns_cookie = entry.ns_cookie;
    } else if (!named) {
        named_errno = errno;
        if (secsock_socket_kind_of(req->sock, &kind, err) != 0) {
            return -1;
        }
    } else {
        int type = 0, protocol = 0, e;
        memset(&kind, 0, sizeof(kind));
        kind.family = ss.ss_family == AF_INET ? SECSOCK_FAMILY_INET
                      : ss.ss_family == AF_INET6 ? SECSOCK_FAMILY_INET6 : SECSOCK_FAMILY_OTHER;
        if (kind.family != SECSOCK_FAMILY_OTHER) {
            olen = sizeof(type);
            if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &olen) != 0) {
                return os_error(err, errno, "getsockopt(SO_TYPE)", NULL);
            }
            olen = sizeof(protocol);
            if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &protocol, &olen) != 0) {
                return os_error(err, errno, "getsockopt(SO_PROTOCOL)", NULL);
            }
            kind.type = type == SOCK_STREAM ? SECSOCK_TYPE_STREAM : type == SOCK_DGRAM ? SECSOCK_TYPE_DGRAM
                                                                                        : SECSOCK_TYPE_OTHER;
            kind.protocol = protocol;
            f->ns_cookie = netns_cookie_of(fd, &e);
            if (sock_cookie != 0) {
                memset(&entry, 0, sizeof(entry));
                entry.cookie = sock_cookie;
                entry.ns_cookie = f->ns_cookie;
                entry.family = ss.ss_family;
                entry.type = type;
                entry.protocol = protocol;
                kind_cache_put(&entry);
            }
        }
    }
    f->sock = fd;
    if (kind.family == SECSOCK_FAMILY_OTHER) {
        return secsock_error_set(err, SECSOCK_ERR_ARGUMENT, 0, 0, "sock",
                                 "the socket's family is not AF_INET or AF_INET6: IPsec secures IP traffic only");
    }
    if (kind.type == SECSOCK_TYPE_OTHER) {
        return secsock_error_set(err, SECSOCK_ERR_ARGUMENT, 0, 0, "sock",
                                 "the socket's type is not SOCK_STREAM or SOCK_DGRAM");
    }
    family = kind.family == SECSOCK_FAMILY_INET ? AF_INET : AF_INET6;
    switch (kind.protocol) {
    case IPPROTO_SCTP: /* a multihomed association sends over other paths too: multipath_verdict */
        f->multipath = 1;
        f->proto = IPPROTO_SCTP;
        break;
    case IPPROTO_TCP:
    case IPPROTO_UDP:
    case IPPROTO_UDPLITE:
    case IPPROTO_DCCP:
        f->proto = (uint8_t)kind.protocol;
        break;
    case IPPROTO_MPTCP:
        f->proto = IPPROTO_TCP; /* MPTCP subflows are TCP on the wire; the others: multipath_verdict */
        f->multipath = 2;
        break;
    default:
        return secsock_error_set(err, SECSOCK_ERR_ARGUMENT, 0, 0, "sock",
                                 "the socket's protocol (%d) has no ports; only TCP, UDP, UDP-Lite, SCTP, DCCP and "
                                 "MPTCP sockets are supported",
                                 kind.protocol);
    }

    if (!named) {
        return os_error(err, named_errno, "getsockname", NULL);
    }
    if (from_sockaddr(&ss, len, family, local16, &f->lport) != 0) {
        return secsock_error_set(err, SECSOCK_ERR_OS, EAFNOSUPPORT, 0, "getsockname",
                                 "getsockname returned an address of another family");
    }

    len = sizeof(ss);
    connected = getpeername(fd, (struct sockaddr *)&ss, &len) == 0;
    if (!connected && errno != ENOTCONN) {
        return os_error(err, errno, "getpeername", NULL);
    }
    if (req->has_peer) {
        const secsock_peer *p = &req->peer;
        if (p->is_ipv6 != (family == AF_INET6)) {
            return secsock_error_set(err, SECSOCK_ERR_ARGUMENT, 0, 0, "peer",
                                     "peer is an %s address but the socket is %s", p->is_ipv6 ? "IPv6" : "IPv4",
                                     family == AF_INET6 ? "AF_INET6" : "AF_INET");
        }
        if (p->port == 0) {
            return secsock_error_set(err, SECSOCK_ERR_ARGUMENT, 0, 0, "peer", "peer has port 0");
        }
    }
    if (connected) {
        if (from_sockaddr(&ss, len, family, peer16, &f->pport) != 0) {
            return secsock_error_set(err, SECSOCK_ERR_OS, EAFNOSUPPORT, 0, "getpeername",
                                     "getpeername returned an address of another family");
        }
        if (req->has_peer && (memcmp(req->peer.addr, peer16, addr_len(family)) != 0 ||
                              htons(req->peer.port) != f->pport)) {
            return secsock_error_set(err, SECSOCK_ERR_ARGUMENT, 0, 0, "peer",
                                     "peer differs from the address the socket is connected to");
        }
    } else if (req->has_peer) {
        memset(peer16, 0, sizeof(peer16));
        memcpy(peer16, req->peer.addr, addr_len(family));
        f->pport = htons(req->peer.port);
        /* The scope of a link-local (or interface- or link-scope multicast: __ipv6_addr_needs_scope_id; scope
         * 0 is reserved and needs none) peer names the interface the kernel sends by.
         * A connected socket needs none: connecting to such a peer bound it to that device
         * (ip6_datagram_connect, tcp_v6_connect), which SO_BINDTOIFINDEX reports. */
        if (family == AF_INET6 && ((peer16[0] == 0xfe && (peer16[1] & 0xc0) == 0x80) ||
                                   (peer16[0] == 0xff && (peer16[1] & 0x0f) >= 1 && (peer16[1] & 0x0f) <= 2))) {
            f->peer_scope = req->peer.scope_id;
        }
    } else if (kind.type == SECSOCK_TYPE_DGRAM) {
        return secsock_error_set(err, SECSOCK_ERR_ARGUMENT, 0, 0, "peer",
                                 "peer is required for a datagram socket that is not connected");
    } else {
        return os_error(err, ENOTCONN, "getpeername", "getpeername (the socket is not connected)");
    }
    if (f->lport == 0) {
        return secsock_error_set(err, SECSOCK_ERR_ARGUMENT, 0, 0, "sock",
                                 "the socket has no local port yet: bind it (or send once) before asking");
    }


    memcpy(f->local, local16, 16);
    memcpy(f->peer, peer16, 16);
    f->family = family;
    f->has_peer_arg = req->has_peer;
    return 0;
}

/*
 * The source address an IPv4 socket bound to the wildcard address sends from: its own route toward the peer
 * (route_get: no RTA_SRC, its mark, device, uid, TOS, protocol and ports, none of which needs a privilege),
 * read from RTA_PREFSRC (rt_fill_info: the output route's fl4->saddr, which udp_sendmsg then sends from).
 * A probe socket's connect() routed with the querier's uid, no TOS, UDP and a random port, so a uidrange,
 * dsfield, ipproto or port rule could give another source than the socket's (review of i14-route, item 3).
 * The device asked is the one resolve_oif asks (flow_oif_hint); toward a multicast peer, whose device
 * (IP_MULTICAST_IF) no getsockopt returns, the bound one. 0, or -1 on error.
 */
static int source_by_route(ss_flow *f, secsock_error *err)
{
    route_answer ra;
    int hint = 0, rc;

    if ((rc = flow_dontroute(f, err)) != 0) {
        /* A link-scoped lookup's source: only a probe socket with the flag can ask it (source_toward_peer). */
        return rc < 0 ? -1 : source_toward_peer(f, AF_INET, f->peer, err);
    }
    if ((rc = flow_oif_hint(f, &hint, err)) == SS_DEV_UNKNOWN) {
        rc = flow_bound_ifindex(f, &hint, err);
    }
    if (rc != 0) {
        return -1;
    }
    if (route_get(f, f->peer, NULL, hint, &ra, err) != 0) {
        return -1;
    }
    if (!ra.has_prefsrc) {
        return secsock_error_set(err, SECSOCK_ERR_OS, EADDRNOTAVAIL, 0, "RTM_GETROUTE",
                                 "the route toward the peer names no source address");
    }
    memcpy(f->local, ra.prefsrc, sizeof(ra.prefsrc));
    return 0;
}

/*
 * The rest of the flow, in the socket's network namespace (it may open a socket to ask the routing table):
 * the source address of a socket bound to the wildcard address, then IPv4-mapped addresses made IPv4.
 */
int finish_flow(ss_flow *f, secsock_error *err)
{
    int family = f->family;

    /* Remembered before the source is filled in: route_get asks the socket's routes without it. */
    f->local_wild = local_is_wildcard(f->local, family);
    if (f->local_wild && family == AF_INET6 && is_v4mapped(f->peer)) {
        f->local[10] = f->local[11] = 0xff; /* ::ffff:0.0.0.0, made 0.0.0.0 below, then asked as IPv4 */
    } else if (f->local_wild && family == AF_INET6 && source_toward_peer(f, family, f->peer, err) != 0) {
        return -1;
    }
    /* IPv4-mapped addresses on an AF_INET6 socket: the packets are IPv4, and so are the kernel's flows. */
    if (family == AF_INET6 && (is_v4mapped(f->local) || is_v4mapped(f->peer))) {
        uint8_t l4[4], p4[4];
        if (!is_v4mapped(f->local) || !is_v4mapped(f->peer)) {
            return secsock_error_set(err, SECSOCK_ERR_ARGUMENT, 0, 0, f->has_peer_arg ? "peer" : "sock",
                                     "the flow mixes an IPv4-mapped and a native IPv6 address");
        }
        memcpy(l4, f->local + 12, 4);
        memcpy(p4, f->peer + 12, 4);
        memset(f->local, 0, 16);
        memset(f->peer, 0, 16);
        memcpy(f->local, l4, 4);
        memcpy(f->peer, p4, 4);
        f->family = AF_INET;
    }
    if (f->local_wild && f->family == AF_INET) {
        return source_by_route(f, err);
    }
    return 0;
}
