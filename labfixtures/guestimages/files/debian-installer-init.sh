#!/bin/sh
# PID 1 of the labfixtures Debian installer initramfs (busybox).
#
# Why a separate busybox initramfs rather than the Debian one: it must find the installation
# medium wherever it is (an IDE/AHCI CD-ROM when the ISO is booted by the firmware, the guide's
# A.4 way; the same ISO given as a CD-ROM with direct kernel boot when an image is built), and
# it must stay small. The real work is done by install.sh from the Debian tree on the medium,
# which has parted, lvm2, mke2fs and grub: one installation code path for both uses.
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec >/dev/console 2>&1

say() { echo "labfixtures-installer: $*"; }
finish() {
    echo "labfixtures: install $1"
    sync
    poweroff -f
    sleep 5
    echo o >/proc/sysrq-trigger
}

say "loading modules"
while read -r m; do
    insmod "/lib/modules/$m" 2>/dev/null
done </modules.order

mkdir -p /medium /lower /rw /newroot
found=
i=0
while [ -z "$found" ] && [ $i -lt 200 ]; do
    for dev in /dev/sr0 /dev/sr1 /dev/vdb /dev/vdc /dev/sda /dev/sdb; do
        [ -b "$dev" ] || continue
        mount -t iso9660 -o ro "$dev" /medium 2>/dev/null || continue
        if [ -f /medium/labfixtures/root.img ]; then
            found=$dev
            break
        fi
        umount /medium
    done
    [ -n "$found" ] || { i=$((i + 1)); sleep 0.1; }
done
[ -n "$found" ] || { say "no installation medium (ISO with labfixtures/root.img) found"; finish failed; }
say "medium found on $found"

mount -t ext4 -o ro,loop /medium/labfixtures/root.img /lower || finish failed
# A writable root for the installer: the read-only tree plus a tmpfs overlay.
mount -t tmpfs -o size=256m tmpfs /rw
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /newroot \
    || finish failed
for d in dev proc sys; do mount -o move /$d /newroot/$d; done
mount -t tmpfs tmpfs /newroot/run
mount -t tmpfs tmpfs /newroot/tmp
# The medium itself, for install.sh's block copy of root.img (the device, read directly).
mkdir -p /newroot/run/medium
mount -o move /medium /newroot/run/medium

if chroot /newroot /usr/lib/labfixtures/install.sh /run/medium; then
    finish ok
else
    finish failed
fi
