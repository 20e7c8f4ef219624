#!/bin/sh
# The labfixtures installer proper: lays out the disk the guide's way (§5, §7) and copies the
# Debian tree onto it. Runs inside the installer VM, because the host kernel has no
# device-mapper: msdos label; vda1 /boot ext2 with the boot flag; vda2 extended; vda5 logical
# LVM physical volume of VG vm0 holding LV root (ext4); GRUB in the MBR; then powers off.
# Usage: install.sh SOURCE_DIR. Parameters come from the kernel command line (lf.install.*).
set -eu
SOURCE=${1:-/mnt}

arg() {
    for w in $(cat /proc/cmdline); do
        case "$w" in "$1"=*) echo "${w#*=}"; return 0 ;; esac
    done
    echo "$2"
}
DISK=$(arg lf.install.disk /dev/vda)
VG=$(arg lf.install.vg vm0)
LV=$(arg lf.install.lv root)
BOOT_MIB=$(arg lf.install.boot_mib 244)
TARGET=/target
step() { echo "labfixtures-installer: $*"; }

# No udev here: LVM creates its /dev nodes itself.
export DM_DISABLE_UDEV=1 LVM_SUPPRESS_FD_WARNINGS=1

[ -b "$DISK" ] || { step "no disk $DISK"; exit 1; }
step "partitioning $DISK: msdos, ${DISK}1 /boot, ${DISK}2 extended, ${DISK}5 LVM"
parted -s -a optimal "$DISK" -- \
    mklabel msdos \
    mkpart primary ext2 1MiB "${BOOT_MIB}MiB" \
    set 1 boot on \
    mkpart extended "$((BOOT_MIB + 1))MiB" 100% \
    mkpart logical "$((BOOT_MIB + 2))MiB" 100% \
    set 5 lvm on
for p in 1 5; do
    n=0
    while [ ! -b "$DISK$p" ] && [ $n -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
done

step "mkfs.ext2 ${DISK}1"
mkfs.ext2 -q -F -L boot "${DISK}1"
step "LVM: pvcreate ${DISK}5, vgcreate $VG, lvcreate $LV"
lvm pvcreate -q -ff -y "${DISK}5"
lvm vgcreate -q "$VG" "${DISK}5"
lvm lvcreate -q -y -n "$LV" -l 100%FREE "$VG"
ROOTDEV=/dev/mapper/$VG-$LV
step "mkfs.ext4 $ROOTDEV"
mkfs.ext4 -q -F -L root "$ROOTDEV"

mkdir -p "$TARGET"
mount "$ROOTDEV" "$TARGET"
mkdir -p "$TARGET/boot"
mount "${DISK}1" "$TARGET/boot"
step "copying the system ($(du -sm "$SOURCE" | cut -f1) MB)"
cp -a "$SOURCE"/. "$TARGET"/
rm -f "$TARGET/usr/lib/labfixtures/install.sh"

BOOT_UUID=$(blkid -s UUID -o value "${DISK}1")
cat >"$TARGET/etc/fstab" <<FSTAB
# /etc/fstab written by the labfixtures installer (the guide's layout)
# <file system>          <mount point> <type> <options>                 <dump> <pass>
# (pass 0: no fsck at each boot, it costs seconds under emulation; /boot nofail: the boot
# does not wait for it)
$ROOTDEV  /             ext4   noatime,errors=remount-ro  0      0
UUID=$BOOT_UUID /boot ext2   noatime,nofail             0      0
FSTAB

step "grub-install --target=i386-pc $DISK"
for d in dev proc sys run; do mount --bind "/$d" "$TARGET/$d"; done
chroot "$TARGET" grub-install --target=i386-pc "$DISK"
echo "grub-pc grub-pc/install_devices multiselect $DISK" | chroot "$TARGET" debconf-set-selections
step "update-grub (slow under emulation: grub-mkconfig is a long shell script)"
chroot "$TARGET" update-grub
for d in run sys proc dev; do umount "$TARGET/$d"; done

umount "$TARGET/boot"
umount "$TARGET"
lvm vgchange -q -an "$VG"
sync
step "done"
