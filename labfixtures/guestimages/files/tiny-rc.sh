#!/bin/sh
export PATH=/bin:/sbin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
ln -sf /proc/self/fd /dev/fd
read -r CMDLINE < /proc/cmdline
csv() { local IFS=,; set -- $1; echo "$@"; }
TRACE=
for w in $CMDLINE; do case "$w" in lf.trace=1) TRACE=1 ;; esac; done
trace() { [ -n "$TRACE" ] && echo "lf-trace: $1 $(cut -d' ' -f1 /proc/uptime)"; }
trace start

DAD=0
UP=
for w in $CMDLINE; do case "$w" in lf.dad=1) DAD=1 ;; esac; done
# EUI-64 link-local addresses (addr_gen_mode 0, not stable-privacy), set before any NIC
for c in all default; do
    echo 0 > /proc/sys/net/ipv6/conf/$c/addr_gen_mode
    echo $DAD > /proc/sys/net/ipv6/conf/$c/accept_dad
done

# virtio_net turns the carrier off in its probe and back on from a work item a moment later;
# linkwatch applies the second change up to 1 s late (one run per second), and the kernel
# makes the link-local address only then. So each NIC gets its EUI-64 link-local address
# from here, as soon as it is up: the very address the kernel would make (addr_gen_mode 0),
# usable at once with DAD off (with lf.dad=1 it stays tentative until the link is ready,
# then DAD runs as usual). The kernel's own attempt later finds it there.
# (No subshells here: each fork costs milliseconds under TCG.)
eui64() {  # sets LL from a MAC address
    local IFS=:
    set -- $1
    [ $# = 6 ] || return 1
    LL=$(printf 'fe80::%x:%x:%x:%x' $(((0x$1 ^ 2) << 8 | 0x$2)) $((0x$3 << 8 | 0xff)) \
         $((0xfe00 | 0x$4)) $((0x$5 << 8 | 0x$6)))
}
links_up() {
    for d in /sys/class/net/*; do
        n=${d##*/}
        case " lo $UP " in *" $n "*) continue ;; esac
        UP="$UP $n"
        ip link set "$n" up
        read -r t < "$d/type"; read -r mac < "$d/address"
        [ "$t" = 1 ] && eui64 "$mac" && ip -6 addr add "$LL/64" dev "$n" 2>/dev/null
    done
}
# Each insmod costs tens of ms under TCG: load a transport only if its bus has devices,
# a device driver only if a virtio device of its type (virtio ids) is present.
VIRTIO_IDS=
has_id() {
    if [ -z "$VIRTIO_IDS" ]; then
        VIRTIO_IDS=" "
        for f in /sys/bus/virtio/devices/*/device; do
            [ -e "$f" ] && read -r id < "$f" && VIRTIO_IDS="$VIRTIO_IDS$id "
        done
    fi
    case "$VIRTIO_IDS" in *" $1 "*) return 0 ;; esac
    return 1
}
while read -r m; do
    case "$m" in
    virtio_pci*) set -- /sys/bus/pci/devices/*; [ -e "$1" ] || continue ;;
    virtio_mmio) set -- /sys/bus/acpi/devices/LNRO0005:* /sys/bus/platform/devices/*virtio*
                 [ -e "$1" ] || [ -e "$2" ] || case "$CMDLINE" in
                     *virtio_mmio.device=*) ;; *) continue ;; esac ;;
    virtio_net) has_id 0x0001 || continue ;;
    virtio_blk) has_id 0x0002 || continue ;;
    virtio_console) has_id 0x0003 || continue ;;
    virtio_rng) has_id 0x0004 || continue ;;
    virtio_balloon) has_id 0x0005 || continue ;;
    esac
    args=
    for w in $CMDLINE; do case "$w" in "$m".*=*) args="$args ${w#"$m".}" ;; esac; done
    insmod /lib/modules/"$m".ko $args
    trace "insmod-$m"
    [ "$m" = virtio_net ] && links_up
done < /etc/modules
trace modules
ip link set lo up
links_up

for w in $CMDLINE; do
    v=${w#*=}
    case "$w" in
    lf.hostname=*) hostname "$v"; echo "$v" > /etc/hostname
                   echo "127.0.1.1 $v" >> /etc/hosts ;;
    lf.mtu=*) set -- $(csv "$v"); ip link set dev "$1" mtu "$2" ;;
    lf.ip=*) set -- $(csv "$v"); dev=$1; shift
             for a in "$@"; do ip addr add "$a" dev "$dev"; done ;;
    lf.dns=*) echo "nameserver $v" >> /etc/resolv.conf ;;
    lf.key=*) echo "${v%%:*} ${v#*:}" >> /root/.ssh/authorized_keys ;;
    esac
done
trace addresses
dropbear -r /etc/dropbear/dropbear_ed25519_host_key -s -P /run/dropbear.pid
trace dropbear-started
for w in $CMDLINE; do
    case "$w" in
    lf.dhcp=*) udhcpc -i "${w#*=}" -s /etc/udhcpc.script -t 20 -T 1 -A 1 -b -S ;;
    esac
done
for w in $CMDLINE; do
    v=${w#*=}
    case "$w" in
    lf.gw=*) ip route replace default via "$v" ;;
    lf.gw6=*) set -- $(csv "$v"); ip -6 route replace default via "$1" ${2:+dev "$2"} ;;
    lf.route=*) set -- $(csv "$v")
                ip route replace "$1" ${2:+via "$2"} ${3:+dev "$3"} ;;
    esac
done

trace routes
i=0
until grep -q ':0016 [0-9A-F]*:0000 0A' /proc/net/tcp6 /proc/net/tcp 2>/dev/null; do
    i=$((i + 1)); [ $i -gt 1000 ] && break; usleep 5000
done
# "ready" means reachable: every NIC has its (non-tentative) IPv6 link-local address
i=0
while [ $i -lt 300 ]; do
    missing=
    for d in /sys/class/net/*; do
        n=${d##*/}
        [ "$n" = lo ] && continue
        ok=
        while read -r addr idx plen scope flags name; do
            [ "$name" = "$n" ] && [ "$scope" = 20 ] || continue
            case "$flags" in [4567cdef]?) ;; *) ok=1 ;; esac
        done < /proc/net/if_inet6
        [ -z "$ok" ] && missing="$missing $n"
    done
    [ -z "$missing" ] && break
    i=$((i + 1)); usleep 10000
done
trace link-local${missing:+-missing:$missing}
echo "@MARKER@ (uptime $(cut -d' ' -f1 /proc/uptime)s)"
