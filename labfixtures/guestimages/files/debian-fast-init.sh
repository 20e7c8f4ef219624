#!/bin/sh
# PID 1 of the debian image's fast initramfs, for direct kernel boots (-kernel/-initrd).
#
# Why not Debian's own initramfs (kept on the disk for GRUB boots): under TCG its udev
# coldplug, settle and scripts take about 7 s before the root is mounted. This one loads the
# virtio, device-mapper and ext4 modules, activates the LVM volumes with the image's own lvm
# binary (so a volume grown later, as in the guide's §7, is still found), mounts the root and
# hands over to systemd, in about a second.
export PATH=/bin:/sbin:/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# /run is handed over to systemd (as Debian's initramfs does): the note that this initramfs
# did the boot, and udev's database records of the volumes it activated (see below).
mount -t tmpfs -o nosuid,nodev,mode=0755 tmpfs /run

fail() {
    echo "lf-initrd: $*" >/dev/console
    echo "lf-initrd: dropping to a shell" >/dev/console
    exec sh </dev/console >/dev/console 2>&1
}

while read -r m; do
    insmod "/lib/modules/$m" 2>/dev/null
done </modules.order

root= mode=ro init=/sbin/init fstype=ext4
for w in $(cat /proc/cmdline); do
    case "$w" in
        root=*) root=${w#root=} ;;
        rootfstype=*) fstype=${w#rootfstype=} ;;
        rw) mode=rw ;;
        init=*) init=${w#init=} ;;
    esac
done
[ -n "$root" ] || fail "no root= on the kernel command line"

# No udev in here: LVM makes its device nodes itself.
export DM_DISABLE_UDEV=1 LVM_SUPPRESS_FD_WARNINGS=1
mkdir -p /run/lvm /run/lock/lvm
n=0
while [ ! -b "$root" ]; do
    case "$root" in
        /dev/mapper/*|/dev/*/*) lvm vgchange -q -ay --sysinit >/dev/null 2>&1 ;;
    esac
    [ -b "$root" ] && break
    n=$((n + 1))
    [ $n -gt 100 ] && fail "root device $root not found"
    sleep 0.1
done

mount -t "$fstype" -o "$mode" "$root" /root || fail "cannot mount $root"
: >/run/labfixtures-fast-initrd

# LVM activated the volumes without udev, so udev never saw the device-mapper event that
# marks a volume usable, and its rules (55-dm.rules) ignore a volume met first at coldplug:
# no /dev/disk/by-* links, no file system type for lsblk, systemd's device unit never ready.
# Debian's initramfs runs udev and hands its database over in /run/udev; here the record
# that matters is written for each volume: the "primary source" flag that a real activation
# event would have left, so the coldplug's `add` event runs the whole of udev's rules.
# (Before, a `vgchange --refresh` after the coldplug made device-mapper send the event
# again: ~5 s of the boot under TCG.)
mkdir -p /run/udev/data
for d in /sys/block/dm-*; do
    [ -r "$d/dev" ] || continue
    printf 'E:DM_UDEV_PRIMARY_SOURCE_FLAG=1\nE:DM_UDEV_RULES_VSN=2\nV:1\n' \
        >"/run/udev/data/b$(cat "$d/dev")"
done
for d in dev proc sys run; do mount -o move "/$d" "/root/$d"; done
exec switch_root /root "$init"
