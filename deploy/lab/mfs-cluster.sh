# mfs-cluster.sh -- sourced by deploy/lab/lab.sh and bench/*.sh: writes the configs of a
# MooseFS cluster on loopback (one master, chunkservers 1..N) under one base directory.
#
#   write_master_cfg BASE PORT0     master ports PORT0 (metaloggers), +1 (chunkservers),
#                                   +2 (clients); exports, empty topology, fresh metadata
#   write_cs_cfg BASE PORT0 I       chunkserver I listening on PORT0+2+I, one disk BASE/csI/hdd
#
# Loopback: MooseFS refuses 127.0.0.0/8 between master and chunkservers, so the master
# remaps 127.0.0.1 to 0.0.0.0 and chunkservers connect to 0.0.0.0 (= the local host).

write_master_cfg() {
  local b=$1 p0=$2
  mkdir -p "$b/etc" "$b/master"
  cat > "$b/etc/mfsmaster.cfg" <<CFG
WORKING_USER = root
WORKING_GROUP = root
DATA_PATH = $b/master
EXPORTS_FILENAME = $b/etc/mfsexports.cfg
TOPOLOGY_FILENAME = $b/etc/mfstopology.cfg
MATOML_LISTEN_HOST = 127.0.0.1
MATOML_LISTEN_PORT = $p0
MATOCS_LISTEN_HOST = 127.0.0.1
MATOCS_LISTEN_PORT = $((p0+1))
MATOCL_LISTEN_HOST = 127.0.0.1
MATOCL_LISTEN_PORT = $((p0+2))
REMAP_BITS = 32
REMAP_SOURCE_IP_CLASS = 127.0.0.1
REMAP_DESTINATION_IP_CLASS = 0.0.0.0
CFG
  printf '127.0.0.1 / rw,alldirs,admin,maproot=0:0\n127.0.0.1 . rw\n' > "$b/etc/mfsexports.cfg"
  : > "$b/etc/mfstopology.cfg"
  cp /var/lib/mfs/metadata.mfs.empty "$b/master/metadata.mfs"
}

write_cs_cfg() {
  local b=$1 p0=$2 i=$3
  mkdir -p "$b/etc" "$b/cs$i/hdd"
  cat > "$b/etc/mfschunkserver$i.cfg" <<CFG
WORKING_USER = root
WORKING_GROUP = root
SYSLOG_IDENT = mfschunkserver$i
DATA_PATH = $b/cs$i
HDD_CONF_FILENAME = $b/etc/mfshdd$i.cfg
MASTER_HOST = 0.0.0.0
MASTER_PORT = $((p0+1))
BIND_HOST = 127.0.0.1
CSSERV_LISTEN_HOST = 127.0.0.1
CSSERV_LISTEN_PORT = $((p0+2+i))
HDD_LEAVE_SPACE_DEFAULT = 256MiB
CFG
  echo "$b/cs$i/hdd" > "$b/etc/mfshdd$i.cfg"
}

# Number of chunkservers registered (with their disks scanned) at the master on PORT0.
cs_registered() {
  mfscli -H 127.0.0.1 -P $(($1+2)) -n -SCS 2>/dev/null | awk -F'\t' '$1=="chunk servers:" && $11>0' | wc -l
}
