#!/bin/sh
# The labfixtures installer proper: lays out the disk the guide's way (§5, §7) and copies the
# Debian tree onto it. Runs inside the installer VM, because the host kernel has no
# device-mapper: msdos label; vda1 /boot ext2 with the boot flag; vda2 extended; vda5 logical
# LVM physical volume of VG vm0 holding LV root (ext4); GRUB in the MBR; then powers off.
# For UEFI as well: vda4, a primary EFI system partition (type 0xef, FAT) right after /boot,
# mounted on /boot/efi, with GRUB for x86_64-efi at the removable path EFI/BOOT/BOOTX64.EFI
# (the firmware finds it with no NVRAM entry). vda3 stays free: the guide's §7 creates it.
# The root file system is not copied file by file: it is root.img itself, the tree as an ext4
# image on the medium, copied block by block onto the logical volume (only its used blocks are
# written), then given a journal and grown to the volume. Under TCG that takes ~5 s where
# `cp -a` of the tree took ~26 s. /boot's files then move to vda1.
# Usage: install.sh [MEDIUM_DIR]: where the installation medium is mounted.
# Parameters come from the kernel command line (lf.install.*).
set -eu
MEDIUM=${1:-/run/medium}
IMAGE=$MEDIUM/labfixtures/root.img

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

# Where root.img lies on the medium's device: ISO 9660 stores a file in one extent, and the
# kernel maps its blocks (FIBMAP); read from the device with O_DIRECT, the copy bypasses
# the guest's page cache. Any doubt (not one extent) and it is read through the file.
# conv=sparse leaves all-zero blocks unwritten: the target is a new blank disk (the
# installer's contract, installer.install() refuses an existing one).
MEDIUM_DEV=$(findmnt -n -o SOURCE "$MEDIUM")
SIZE=$(stat -c %s "$IMAGE")
OFFSET=$(python3 -c '
import fcntl, os, struct, sys
FIBMAP, FIGETBSZ = 1, 2
with open(sys.argv[1], "rb") as f:
    def ioctl(op, arg):
        return struct.unpack("i", fcntl.ioctl(f, op, struct.pack("i", arg)))[0]
    bsz = ioctl(FIGETBSZ, 0)
    n = (os.fstat(f.fileno()).st_size + bsz - 1) // bsz
    first, last = ioctl(FIBMAP, 0), ioctl(FIBMAP, n - 1)
    if first > 0 and last == first + n - 1:
        print(first * bsz)
' "$IMAGE") || OFFSET=
step "copying the system: root.img ($((SIZE / 1048576)) MB, ext4) onto $ROOTDEV, block by block"
if [ -n "$OFFSET" ]; then
    dd if="$MEDIUM_DEV" of="$ROOTDEV" bs=4M iflag=direct,skip_bytes,count_bytes \
        skip="$OFFSET" count="$SIZE" oflag=direct conv=sparse status=none
else
    dd if="$IMAGE" of="$ROOTDEV" bs=4M oflag=direct conv=sparse status=none
fi
step "the root file system: a journal, the label root, grown to the whole volume"
tune2fs -O has_journal -L root "$ROOTDEV" >/dev/null
out=$(resize2fs "$ROOTDEV" 2>&1) || { echo "$out"; step "resize2fs $ROOTDEV failed"; exit 1; }

mkdir -p "$TARGET"
mount "$ROOTDEV" "$TARGET"
rm -f "$TARGET/usr/lib/labfixtures/install.sh"
# /boot's files go to their own file system, vda1; the root keeps an empty /boot under it.
mkdir -p /run/bootfs
mount "${DISK}1" /run/bootfs
cp -a "$TARGET/boot/." /run/bootfs/
find "$TARGET/boot" -mindepth 1 -delete
umount /run/bootfs
mount "${DISK}1" "$TARGET/boot"
mkdir -p "$TARGET/boot/efi"
mount -t vfat "${DISK}4" "$TARGET/boot/efi"

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
# grub.cfg is written here, not by update-grub: grub-mkconfig runs grub-probe 14 times for
# this layout, ~1 s each under TCG (13-25 s in all, the longest step of the install). The
# file says what update-grub says for it: the serial console, no menu delay, one entry that
# finds /boot by its UUID and boots the installed kernel with the image's parameters
# (/etc/default/grub.d/labfixtures.cfg). `update-grub` in the installed system writes the
# Debian one again. No `timeout_style=hidden`: with a serial terminal_input, GRUB 2.06 spent
# 3 s before booting the default entry (timeout=0 alone boots it at once, no menu drawn).
KVER=$(cd "$TARGET/boot" && ls vmlinuz-* | sed -n 's/^vmlinuz-//p' | sort -V | tail -n 1)
[ -n "$KVER" ] || { step "no kernel in /boot"; exit 1; }
GRUB_CMDLINE_LINUX=
. "$TARGET/etc/default/grub.d/labfixtures.cfg"
step "/boot/grub/grub.cfg: Linux $KVER, /boot UUID=$BOOT_UUID, root $ROOTDEV"
cat >"$TARGET/boot/grub/grub.cfg" <<GRUBCFG
# Written by the labfixtures installer for this layout; \`update-grub\` writes Debian's.
set default=0
set timeout=0
serial --speed=115200
terminal_input serial console
terminal_output serial console
insmod part_msdos
insmod ext2
search --no-floppy --fs-uuid --set=root $BOOT_UUID
menuentry 'Debian GNU/Linux' --class debian --class gnu-linux --class gnu --class os {
	insmod gzio
	echo	'Loading Linux $KVER ...'
	linux	/vmlinuz-$KVER root=$ROOTDEV ro $GRUB_CMDLINE_LINUX
	echo	'Loading initial ramdisk ...'
	initrd	/initrd.img-$KVER
}
GRUBCFG
for d in run sys proc dev; do umount "$TARGET/$d"; done

umount "$TARGET/boot/efi"
umount "$TARGET/boot"
umount "$TARGET"
lvm vgchange -q -an "$VG"
sync
step "done"
