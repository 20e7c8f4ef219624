#!/bin/sh
# Bring a network interface up with an EUI-64 IPv6 link-local address (the guide derives
# fe80::baad:caff:fefe:N from the MAC), and without DAD unless lf.dad=1 asks for it: DAD
# delays a usable link-local address by about a second. Called by udev for every eth*.
ifc=$1
dad=0
grep -qw 'lf.dad=1' /proc/cmdline && dad=1
echo 0 >"/proc/sys/net/ipv6/conf/$ifc/addr_gen_mode" 2>/dev/null
echo "$dad" >"/proc/sys/net/ipv6/conf/$ifc/accept_dad" 2>/dev/null
ip link set dev "$ifc" up
