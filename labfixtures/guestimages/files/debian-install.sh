#!/bin/sh
# The labfixtures installer proper: lays out the disk the guide's way (§5, §7) and copies the
# Debian tree onto it. Runs inside the installer VM, because the host kernel has no
# device-mapper: msdos label; vda1 /boot ext2 with the boot flag; vda2 extended; vda5 logical
# LVM physical volume of VG vm0 holding LV root (ext4); GRUB in the MBR; then powers off.
# For UEFI as well: vda4, a primary EFI system partition (type 0xef, FAT) right after /boot,
# mounted on /boot/efi, with GRUB for x86_64-efi at the removable path EFI/BOOT/BOOTX64.EFI
# (the firmware finds it with no NVRAM entry). vda3 stays free: the guide's §7 creates it.
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
ESP_MIB=$(arg lf.install.esp_mib 64)
EXT_START=$((BOOT_MIB + ESP_MIB + 1))
step "partitioning $DISK: msdos, ${DISK}1 /boot, ${DISK}4 EFI system, ${DISK}2 extended, ${DISK}5 LVM"
# sfdisk rather than parted: parted numbers a new primary partition with the lowest free
# number, and the EFI system partition must be vda4 (vda3 is the guide's, §7).
sfdisk -q --wipe always "$DISK" <<SFDISK
label: dos
${DISK}1 : start=1MiB, size=$((BOOT_MIB - 1))MiB, type=83, bootable
${DISK}2 : start=${EXT_START}MiB, type=5
${DISK}4 : start=${BOOT_MIB}MiB, size=${ESP_MIB}MiB, type=ef
${DISK}5 : start=$((EXT_START + 1))MiB, type=8e
SFDISK
for p in 1 4 5; do
    n=0
    while [ ! -b "$DISK$p" ] && [ $n -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
done

step "mkfs.ext2 ${DISK}1"
mkfs.ext2 -q -F -L boot "${DISK}1"
step "mkfs.vfat ${DISK}4 (EFI system partition)"
mkfs.vfat -n EFI "${DISK}4" >/dev/null
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
mkdir -p "$TARGET/boot/efi"
mount -t vfat "${DISK}4" "$TARGET/boot/efi"
step "copying the system ($(du -sm "$SOURCE" | cut -f1) MB)"
cp -a "$SOURCE"/. "$TARGET"/
rm -f "$TARGET/usr/lib/labfixtures/install.sh"

BOOT_UUID=$(blkid -s UUID -o value "${DISK}1")
ESP_UUID=$(blkid -s UUID -o value "${DISK}4")
cat >"$TARGET/etc/fstab" <<FSTAB
# /etc/fstab written by the labfixtures installer (the guide's layout)
# <file system>          <mount point> <type> <options>                 <dump> <pass>
# (pass 0: no fsck at each boot, it costs seconds under emulation; /boot nofail: the boot
# does not wait for it)
$ROOTDEV  /             ext4   noatime,errors=remount-ro  0      0
UUID=$BOOT_UUID /boot ext2   noatime,nofail             0      0
UUID=$ESP_UUID  /boot/efi vfat umask=0077,nofail         0      0
FSTAB

step "grub-install --target=i386-pc $DISK"
for d in dev proc sys run; do mount --bind "/$d" "$TARGET/$d"; done
chroot "$TARGET" grub-install --target=i386-pc "$DISK"
echo "grub-pc grub-pc/install_devices multiselect $DISK" | chroot "$TARGET" debconf-set-selections
step "grub-install --target=x86_64-efi --removable (EFI/BOOT/BOOTX64.EFI, no NVRAM entry)"
chroot "$TARGET" grub-install --target=x86_64-efi --efi-directory=/boot/efi \
    --boot-directory=/boot --removable --no-nvram --no-uefi-secure-boot
[ -f "$TARGET/boot/efi/EFI/BOOT/BOOTX64.EFI" ] || { step "no EFI/BOOT/BOOTX64.EFI"; exit 1; }
step "update-grub (slow under emulation: grub-mkconfig is a long shell script)"
chroot "$TARGET" update-grub
for d in run sys proc dev; do umount "$TARGET/$d"; done

umount "$TARGET/boot/efi"
umount "$TARGET/boot"
umount "$TARGET"
lvm vgchange -q -an "$VG"
sync
step "done"
