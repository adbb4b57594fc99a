/* A socket address as text (core.h): the one copy the pool, the
 * listeners and the logs use. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "herald/core.h"

bool sockaddr_ip(const struct sockaddr_storage *sa, char *out, size_t cap)
{
    out[0] = '\0';
    const void *a = sa->ss_family == AF_INET    ? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
                    : sa->ss_family == AF_INET6 ? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
                                                : NULL;
    if (a && inet_ntop(sa->ss_family, a, out, (socklen_t)cap))
        return true;
    out[0] = '\0';
    return false;
}

uint16_t sockaddr_port(const struct sockaddr_storage *sa)
{
    if (sa->ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)sa)->sin_port);
    if (sa->ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    return 0;
}
