#!/usr/bin/env python3
"""Sorts the CPU samples of a `perf record` of a drain into where the time goes: the store,
wasm, signing, HTTP and TCP, scheduling, memory. Run by scripts/profile-drain; usage:
categorize.py perf.data[:pid] [...], where a pid keeps that process's samples alone (the
engine child of a producers' workload). The buckets are by thread and symbol name, so they
are approximate; "other" is what no rule claims."""
import subprocess, sys, re, collections
def cats(arg):
    path, _, pid = arg.partition(":")
    only = [f"--pid={pid}", "--percentage", "relative"] if pid else []
    out = subprocess.run(["perf","report","-i",path,*only,"--no-children","--sort","comm,dso,sym","--stdio","-g","none"],capture_output=True,text=True).stdout
    c = collections.Counter()
    for line in out.splitlines():
        m = re.match(r"\s+([\d.]+)%\s+(\S+)\s+(.+?)\s+\[(.)\]\s+(.*)", line)
        if not m: continue
        pct, comm, dso, kind, sym = float(m.group(1)), m.group(2), m.group(3), m.group(4), m.group(5)
        s = sym
        if comm.startswith("wasmhook-store"): k = "store (SQLite writer thread, incl. its kernel I/O)"
        elif dso.startswith("[JIT]") or "wasmtime" in s or "cranelift" in s or "Sandbox" in s or "pooling" in s or "component" in s: k = "wasm (guest code, instantiation, lifting)"
        elif "sha2" in s or "hmac" in s or "signature" in s or "sign" == s: k = "signing (HMAC-SHA256)"
        elif "hyper" in s or "tcp" in s or "http" in s.lower() or "sock" in s or "skb" in s or "inet" in s or "ip_" in s or "net_" in s or "__dev" in s or "loopback" in s or "bbr" in s or "writev" in s or "recv" in s or "send" in s: k = "HTTP and TCP (engine client and bench receiver)"
        elif "malloc" in s or "free" in s or "memmove" in s or "memset" in s or "memcpy" in s or "realloc" in s or "unlink_chunk" in s or "_int_" in s: k = "memory (malloc, copies)"
        elif "tokio" in s or "futex" in s or "schedule" in s or "task_switch" in s or "spin_unlock" in s or "wake" in s: k = "scheduling (tokio tasks, thread wake-ups)"
        elif "page_fault" in s or "exc_" in s or "clear_page" in s or "madvise" in s or "tlb" in s or "smp_call" in s or "write_msr" in s: k = "kernel memory (page faults, TLB)"
        else: k = "other"
        c[k] += pct
    return c
if __name__ == "__main__":
  for p in sys.argv[1:]:
    print(p)
    for k, v in cats(p).most_common():
        print(f"  {v:5.1f}%  {k}")
