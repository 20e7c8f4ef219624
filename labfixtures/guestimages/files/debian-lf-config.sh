#!/bin/sh
# labfixtures guest configuration for the Debian image: applies the lf.* words of the kernel
# command line (hostname, addresses, routes, DNS, extra SSH keys; the syntax is documented in
# labfixtures/guestimages/config.py). Why the command line: every VM boots the same image, so
# a VM's identity cannot live in it. Written with shell built-ins only: under TCG every
# extra process costs tens of milliseconds on the way to ssh.service.
set -u
log() { echo "lf-config: $*"; }

wait_if() {
    n=0
    while [ ! -e "/sys/class/net/$1" ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
    [ -e "/sys/class/net/$1" ] || { log "no interface $1"; return 1; }
    /usr/lib/labfixtures/lf-link "$1"
}

hostname= mtus= ips= dhcps= gw= gw6= routes= dnss= keys=
read -r cmdline </proc/cmdline
for w in $cmdline; do
    case "$w" in
        lf.hostname=*) hostname=${w#*=} ;;
        lf.mtu=*) mtus="$mtus ${w#*=}" ;;
        lf.ip=*) ips="$ips ${w#*=}" ;;
        lf.dhcp=*) dhcps="$dhcps ${w#*=}" ;;
        lf.gw=*) gw=${w#*=} ;;
        lf.gw6=*) gw6=${w#*=} ;;
        lf.route=*) routes="$routes ${w#*=}" ;;
        lf.dns=*) dnss="$dnss ${w#*=}" ;;
        lf.key=*) keys="$keys ${w#*=}" ;;
    esac
done

ip link set lo up

if [ -n "$hostname" ]; then
    hostname "$hostname"
    echo "$hostname" >/etc/hostname
    { grep -v '^127\.0\.1\.1[[:space:]]' /etc/hosts; printf '127.0.1.1\t%s\n' "$hostname"; } \
        >/etc/hosts.lf && mv /etc/hosts.lf /etc/hosts
fi

for spec in $mtus; do
    ifc=${spec%%,*}
    wait_if "$ifc" && ip link set dev "$ifc" mtu "${spec#*,}"
done

# One `ip -batch` for every address and route: one process instead of one per line.
batch=
for spec in $ips; do
    ifc=${spec%%,*}
    wait_if "$ifc" || continue
    rest=${spec#*,}
    oldifs=$IFS; IFS=,
    for a in $rest; do
        case "$a" in
            *:*) batch="${batch}address replace $a dev $ifc nodad
" ;;
            *) batch="${batch}address replace $a dev $ifc
" ;;
        esac
    done
    IFS=$oldifs
done
[ -n "$batch" ] && printf '%s' "$batch" | ip -force -batch -

for ifc in $dhcps; do
    wait_if "$ifc" || continue
    if /usr/lib/klibc/bin/ipconfig -t 10 "$ifc" >/dev/null 2>&1; then
        if [ -z "$dnss" ] && [ -r "/run/net-$ifc.conf" ]; then
            . "/run/net-$ifc.conf"
            [ -n "${IPV4DNS0:-}" ] && [ "$IPV4DNS0" != 0.0.0.0 ] && \
                echo "nameserver $IPV4DNS0" >/etc/resolv.conf
        fi
    else
        log "DHCP on $ifc failed"
    fi
done

# No address given at all (e.g. booted from its disk by GRUB, as the guide's VMs are): try
# DHCP on eth0 in the background, as an installed Debian with `inet dhcp` would; QEMU's
# user-mode network (guide §8) answers it. Never on the way to ssh.service. The link is
# brought up first (as udev's lf-link will, later): klibc's ipconfig on a link that is
# still down gets its lease about 10 s later, on one that is up in 0.2 s (measured).
if [ -z "$ips$dhcps" ] && [ -e /sys/class/net/eth0 ]; then
    /usr/lib/labfixtures/lf-link eth0
    (/usr/lib/klibc/bin/ipconfig -t 60 eth0 >/dev/null 2>&1 && . /run/net-eth0.conf &&
        [ -n "${IPV4DNS0:-}" ] && [ "$IPV4DNS0" != 0.0.0.0 ] && [ ! -s /etc/resolv.conf ] &&
        echo "nameserver $IPV4DNS0" >/etc/resolv.conf) &
fi

batch=
[ -n "$gw" ] && batch="${batch}route replace default via $gw
"
if [ -n "$gw6" ]; then
    case "$gw6" in
        *,*) batch="${batch}route replace default via ${gw6%%,*} dev ${gw6#*,}
" ;;
        *) batch="${batch}route replace default via $gw6
" ;;
    esac
fi
for spec in $routes; do
    oldifs=$IFS; IFS=,
    set -- $spec
    IFS=$oldifs
    batch="${batch}route replace $1${2:+ via $2}${3:+ dev $3}
"
done
[ -n "$batch" ] && printf '%s' "$batch" | ip -force -batch -

if [ -n "$dnss" ]; then
    : >/etc/resolv.conf
    for d in $dnss; do echo "nameserver $d" >>/etc/resolv.conf; done
fi

if [ -n "$keys" ]; then
    mkdir -p -m 700 /root/.ssh
    for k in $keys; do
        line="${k%%:*} ${k#*:}"
        grep -qxF "$line" /root/.ssh/authorized_keys 2>/dev/null || \
            echo "$line" >>/root/.ssh/authorized_keys
    done
fi
exit 0
