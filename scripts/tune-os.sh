#!/usr/bin/env bash
# Run: sudo scripts/tune-os.sh [--dry-run]
#
# Raises the Linux limits that rtlab's labs and benchmarks run into when they
# hold tens of thousands of connections in one process. Each setting below
# says which lab hits it and why. It only ever *raises* a limit (a value that
# is already high enough is left alone), so running it twice changes nothing
# the second time; it prints every setting with its old and new value.
#
# The changes last until the next reboot. To keep them, copy the printed
# `key = value` lines into /etc/sysctl.d/90-rtlab.conf.
#
# One limit is not a sysctl: the number of open files per process
# (RLIMIT_NOFILE, `ulimit -n`). Every connection is one descriptor in the
# server and one in a client, so 20,000 connections need a limit above
# 20,000 for the server process. Raise it in the shell that starts the server
# (`ulimit -n 1048576`, allowed up to the hard limit; root may raise the hard
# limit too, up to fs.nr_open below) or for a user in
# /etc/security/limits.conf. The benchmarks spread their client sockets over
# several worker processes for this reason.
#
# What this script CANNOT raise: where the hard limit is fixed from outside
# (a container or a sandbox that starts the session without
# CAP_SYS_RESOURCE, as on rtlab's benchmark machine: hard limit 20,000,
# `prlimit` answers "Operation not permitted" even to root), no sysctl
# helps. Then one process holds at most about 20,000 connections, and a
# million need at least 51 server processes (`rtlab cluster`,
# `rtlab bench million`) and as many client processes.
set -euo pipefail

dry_run=0
[[ "${1:-}" == "--dry-run" ]] && dry_run=1
if [[ $dry_run == 0 && $EUID -ne 0 ]]; then
    echo "tune-os: run as root (or with --dry-run to see what would change)" >&2
    exit 1
fi

changed=0
# raise KEY MINIMUM: sets KEY to MINIMUM if it is lower (or absent: skipped).
raise() {
    local key="$1" want="$2" path="/proc/sys/${1//.//}"
    if [[ ! -e "$path" ]]; then
        printf '%-34s (not available on this kernel: skipped)\n' "$key"
        return
    fi
    local have
    have="$(<"$path")"
    if (( have >= want )); then
        printf '%-34s = %-10s (already enough)\n' "$key" "$have"
    elif [[ $dry_run == 1 ]]; then
        printf '%-34s = %-10s (would raise from %s)\n' "$key" "$want" "$have"
    else
        echo "$want" >"$path"
        printf '%-34s = %-10s (raised from %s)\n' "$key" "$want" "$have"
        changed=$((changed + 1))
    fi
}

# raise_all KEY "WANT..." ENOUGH: for a sysctl of several numbers, sets all
# of them to WANT unless the function ENOUGH, given the current numbers,
# says they already do.
raise_all() {
    local key="$1" want="$2" enough="$3" path="/proc/sys/${1//.//}" have
    read -r -a have <"$path"
    if "$enough" "${have[@]}"; then
        printf '%-34s = %-10s (already enough)\n' "$key" "${have[*]}"
    elif [[ $dry_run == 1 ]]; then
        printf '%-34s = %-10s (would set from %s)\n' "$key" "$want" "${have[*]}"
    else
        echo "$want" >"$path"
        printf '%-34s = %-10s (set from %s)\n' "$key" "$want" "${have[*]}"
        changed=$((changed + 1))
    fi
}

# --- memory mappings -------------------------------------------------------
# vm.max_map_count: memory mappings (VMAs) per process; default 65530.
# may: every coroutine stack is one mmap plus an mprotect'ed guard page, two
# mappings, so a may server holds at most about vm.max_map_count / 2
# connections; past it, creating a stack fails and the lab answers 503.
# threads: four mappings per thread (glibc's stack and its guard page, std's
# signal stack and its guard page), so about vm.max_map_count / 4 threads,
# less the mappings the process already has; the lab counts that budget when
# it starts and answers 503 one thread short of it (thread_ceiling in
# labs/threads/src/lib.rs). The ceilings this machine gives are printed at
# the end.
raise vm.max_map_count 1048576

# --- threads and processes ---------------------------------------------------
# kernel.pid_max: every thread takes a process id, system-wide; the default
# 32768 caps the whole machine near 32,000 threads. Hit by the threads lab
# (one thread per connection). 4194304 is the 64-bit maximum.
raise kernel.pid_max 4194304
# kernel.threads-max: threads system-wide (default: a fraction of RAM). Hit
# by the threads lab on small machines.
raise kernel.threads-max 1000000

# --- files and descriptors -----------------------------------------------------
# fs.file-max: open files system-wide: server and client sockets of every
# lab and benchmark count here. A loopback connection is two open files (its
# two ends), so the million needs more than 2,000,000 besides everything
# else on the machine; the kernel's default is about a tenth of RAM in KiB
# (about 2.47 million on 24 GiB: about 1.2 million pairs). The number itself
# costs nothing: each open file's memory is counted when it is opened (the
# kernel share `rtlab bench million` reports).
raise fs.file-max 4194304
# fs.nr_open: the highest RLIMIT_NOFILE any process may be given (see the
# note on `ulimit -n` above).
raise fs.nr_open 1048576
# fs.epoll.max_user_watches: descriptors one user may register with epoll.
# Hit by every event-loop lab (tokio, mio and may all register each socket);
# the default is a share of RAM and rarely too low, but a small VM can get
# below 100,000.
raise fs.epoll.max_user_watches 1048576

# --- accepting bursts of connections -------------------------------------------
# net.core.somaxconn: the cap on any listen() backlog. rtlab listens with a
# backlog of 4096; a benchmark that opens thousands of connections at once
# overflows a smaller queue, and clients then wait for SYN retransmits (1 s,
# 3 s, ...) — which looks like a slow server. Every lab.
raise net.core.somaxconn 65535
# net.ipv4.tcp_max_syn_backlog: half-open connections waiting for their
# handshake to finish; same burst, same symptom. Every lab.
raise net.ipv4.tcp_max_syn_backlog 65535
# ANCHOR: million_sysctls
# net.core.netdev_max_backlog: packets queued per CPU between a sender and
# the receiving side of loopback (loopback "transmits" into this queue).
# The default 1000 overflows when a million sockets' handshakes, or one
# broadcast's million segments, arrive at once; a dropped segment waits for
# a retransmit (200 ms or more) and shows up as the broadcast's tail. Drops
# are the second column of /proc/net/softnet_stat.
raise net.core.netdev_max_backlog 65536

# --- TCP memory ------------------------------------------------------------------
# net.ipv4.tcp_mem: pages all TCP sockets together may hold in buffers: below
# the first value no pressure, above the second the kernel shrinks buffers,
# at the third it refuses to queue more (a write blocks, a segment is
# dropped). Idle connections hold almost nothing, but one broadcast puts one
# segment in each of a million receive queues at once (about 1 KiB each, with
# the buffer's overhead): over 1 GiB, above the default pressure point on
# 24 GiB. Raised to 6, 8 and 12 GiB (in 4 KiB pages).
mem_enough() { (( $1 >= 1572864 && $2 >= 2097152 && $3 >= 3145728 )); }
raise_all net.ipv4.tcp_mem "1572864 2097152 3145728" mem_enough
# ANCHOR_END: million_sysctls

# --- the clients' side --------------------------------------------------------
# net.ipv4.ip_local_port_range: ephemeral ports for outgoing connections.
# Each client socket to one server address takes one port per source
# address; the default 32768-60999 (28,232 ports) is below 2 x 10,000 plus
# the sockets left in TIME_WAIT by the previous run. The benchmarks also
# spread clients over several 127.0.0.x source addresses (the million: 32
# source addresses per client process, each in its own 127.16.0.0/12 block,
# times one destination port per server process: a few hundred connections
# per (source, destination) pair, far below this range).
ports_enough() { (( $1 <= 1024 && $2 >= 65535 )); }
raise_all net.ipv4.ip_local_port_range "1024 65535" ports_enough
# net.netfilter.nf_conntrack_max: if connection tracking is loaded (a
# firewall, Docker), every loopback connection takes an entry too; a full
# table drops new connections silently. Every lab, under load; the million
# needs one entry per connection (two million covers it) — only if a rule
# tracks loopback at all (/proc/sys/net/netfilter/nf_conntrack_count stays 0
# while connections open when none does).
raise net.netfilter.nf_conntrack_max 2097152

echo
if [[ $dry_run == 1 ]]; then
    echo "tune-os: dry run, nothing changed"
else
    echo "tune-os: $changed setting(s) changed (until reboot)"
fi
echo "tune-os: open files for this shell: soft $(ulimit -Sn), hard $(ulimit -Hn) (raise with ulimit -n, see the top of this script)"
maps="$(</proc/sys/vm/max_map_count)"
echo "tune-os: vm.max_map_count $maps: may holds at most about $((maps / 2)) connections, threads about $((maps / 4)) (two and four mappings per connection)"
