"""Summarises a flight recording for `infra/local/profile`.

Thread pools first, because on a shared box the first question is which
stage (request threads, reads, compaction, flushes, the JIT) takes the
CPU; then methods by the share of sampled stacks they appear on, which
shows the work inside those stages.
"""

import collections
import json
import re
import sys

TOP_METHODS = 40


def events(path):
    with open(path) as f:
        return json.load(f)["recording"]["events"]


def thread_pools(path):
    """Mean CPU of each thread, summed per pool (names without numbers)."""
    loads = collections.defaultdict(list)
    for e in events(path):
        v = e["values"]
        thread = v.get("eventThread") or {}
        loads[thread.get("javaName") or "?"].append(v["user"] + v["system"])
    pools = collections.defaultdict(float)
    for name, xs in loads.items():
        pools[re.sub(r"[-:\d]+$", "", name)] += sum(xs) / len(xs)
    return pools


def hot_methods(path):
    counts, n = collections.Counter(), 0
    for e in events(path):
        frames = e["values"]["stackTrace"]["frames"]
        n += 1
        seen = set()
        for f in frames:
            m = f["method"]
            key = m["type"]["name"].rsplit("/", 1)[-1] + "." + m["name"]
            if key not in seen:
                seen.add(key)
                counts[key] += 1
    return counts, n


def main(cpu_path, samples_path):
    pools = thread_pools(cpu_path)
    total = sum(pools.values())
    if total <= 0:
        # The recorder reports thread CPU every 10 s in its profile settings.
        print("no thread CPU figures: record for 10 s or longer")
    else:
        # jdk.ThreadCPULoad is a fraction of the whole machine.
        print(f"CPU: {total * 100:.0f}% of the machine, by thread pool")
        for name, load in sorted(pools.items(), key=lambda kv: -kv[1])[:12]:
            print(f"  {load / total * 100:5.1f}%  {name}")
    counts, n = hot_methods(samples_path)
    print(f"methods on the most of {n} sampled stacks")
    for key, c in counts.most_common(TOP_METHODS):
        print(f"  {c * 100 / n:5.1f}%  {key}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
