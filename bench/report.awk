# report.awk - the tables of docs/PERFORMANCE.md from bench.sh's raw lines
# ("impl=... threads=... model=... size=... channels=... encoding=...
# key=value ..."): medians over the repetitions of every number.

# Splits a space-separated list of numbers into v[1..n], ascending; returns n.
function sort_numbers(list, v,    n, i, j, t) {
    n = split(list, v, " ")
    for (i = 2; i <= n; i++)
        for (j = i; j > 1 && v[j - 1] + 0 > v[j] + 0; j--) {
            t = v[j]; v[j] = v[j - 1]; v[j - 1] = t
        }
    return n
}

function median(list,    n, v) {
    n = sort_numbers(list, v)
    return n ? v[int((n + 1) / 2)] : ""
}

function add(key, value) {
    values[key] = (key in values) ? values[key] " " value : value
}

{
    delete f
    for (i = 1; i <= NF; i++) {
        split($i, kv, "=")
        f[kv[1]] = kv[2]
    }
    if (f["impl"] == "meta") {
        if ("cores" in f)
            cores = f["cores"] + 0
        next
    }
    if (f["impl"] == "fma") {
        add("fma|" f["threads"], f["fma_gflops"])
        next
    }
    if (f["impl"] == "sgemm") {
        add("sgemm|" f["threads"], f["gflops"])
        threads_seen[f["threads"]] = 1
        next
    }
    cfg = f["threads"] "|" f["model"] "|" f["size"] "x" f["channels"] "|" f["encoding"]
    if (!(cfg in seen)) {
        seen[cfg] = 1
        order[++configs] = cfg
    }
    for (k in f)
        if (k != "impl" && k !~ /^(threads|model|size|channels|encoding)$/)
            add(f["impl"] "|" cfg "|" k, f[k])
}

function get(impl, cfg, key) {
    return median(values[impl "|" cfg "|" key])
}

# value in format, or "-" where the run has none (PEER=0 measures no PyTorch).
function cell(value, format) {
    return value == "" ? "-" : sprintf(format, value)
}

# The step time of an encoding at own img/s over that at base img/s,
# "+12.3 %", or "-" without both.
function overhead(base, own) {
    return (base > 0 && own > 0) ? sprintf("%+.1f %%", 100 * (base / own - 1)) : "-"
}

# a / b as a ratio "1.23x", or "-" without both.
function ratio(a, b) {
    return (a > 0 && b > 0) ? sprintf("%.2fx", a / b) : "-"
}

function sgemm(threads) {
    return median(values["sgemm|" threads])
}

# The smallest (which < 0) or largest value of a list.
function extreme(list, which,    n, v, i, best) {
    n = split(list, v, " ")
    best = v[1] + 0
    for (i = 2; i <= n; i++)
        if ((which < 0 && v[i] + 0 < best) || (which > 0 && v[i] + 0 > best))
            best = v[i] + 0
    return best
}

# The FMA limit of each thread count, and how much of it sgemm and the
# fastest training step reach: the room any kernel could still win.
function fma_line(    t, limit, c, best, gf, n, v, i) {
    n = sort_numbers(thread_counts(), v)
    for (i = 1; i <= n; i++)
        if (("fma|" (t = v[i])) in values) {
            limit = median(values["fma|" t])
            best = 0
            for (c = 1; c <= configs; c++) {
                load(c)
                gf = get("vitrain", cfg, "gflops")
                if (p[1] == t && gf > best)
                    best = gf
            }
            print ""
            printf "Single-precision FMA limit, %s thread%s (`vit_bench fma`, register-only multiply-adds): %.1f GFLOP/s; sgemm 1024^3 reaches %.0f %% of it, the fastest training step %.0f %%.\n",
                   t, (t == 1 ? "" : "s"), limit, 100 * sgemm(t) / limit, 100 * best / limit
        }
}

# Configuration c in the order first seen: sets cfg and its fields p[1..4]
# (threads, model, input, encoding).
function load(c) {
    cfg = order[c]
    split(cfg, p, "|")
}

# The seconds vitrain's attention and encoding phases (2 and 3) take in cfg
# beyond those of base (absolute at the same threads, model and input), in
# percent of base's step; "" without phase times.
function overhead_by_phase(cfg, base,    k, base_step, own_step, extra) {
    base_step = 0; own_step = 0
    for (k = 0; k <= 5; k++) {
        base_step += get("vitrain", base, "phase_" k)
        own_step += get("vitrain", cfg, "phase_" k)
    }
    if (base_step <= 0 || own_step <= 0)
        return ""
    extra = get("vitrain", cfg, "phase_2") + get("vitrain", cfg, "phase_3") - \
            get("vitrain", base, "phase_2") - get("vitrain", base, "phase_3")
    return 100 * extra / base_step
}

# ---- goals: every row of the run against performance goals ---------------
# goal_row(g, value, limit, label): one row's value for goal g, which the
# row meets where value >= limit (goal_higher[g]) or value <= limit. The
# goal keeps the count of rows that meet it and the row furthest from
# meeting it (or, when all do, the closest to missing it).
function goal_row(g, value, limit, label,    margin) {
    goal_rows[g]++
    margin = goal_higher[g] ? value - limit : limit - value
    if (margin >= 0)
        goal_met[g]++
    if (goal_rows[g] == 1 || margin < goal_margin[g]) {
        goal_margin[g] = margin
        goal_closest[g] = sprintf(goal_format[g], value, limit) " (" label ")"
    }
}

function goal_define(g, name, higher, format) {
    goal_name[g] = name; goal_higher[g] = higher; goal_format[g] = format
}

# The encoding without a ":recompute" suffix.
function encoding_name(enc) {
    sub(/:recompute$/, "", enc)
    return enc
}

# The overhead goal (percent over absolute, by phase) of an encoding.
function overhead_limit(enc) {
    enc = encoding_name(enc)
    if (enc ~ /^(rope_axial|rope_mixed|spherical)$/)
        return 5
    if (enc ~ /^(comrope_ap|comrope_ld|liere)$/)
        return 10
    if (enc == "liere:dense")
        return 20
    return ""
}

function goals(    c, label, vt, pt, sg, enc, base, by_phase, limit, g, one, counts) {
    goal_define(1, "training >= 1.5x PyTorch, absolute", 1, "%.2fx")
    goal_define(2, "training >= 2x PyTorch, rotary encodings", 1, "%.2fx")
    goal_define(3, "whole training step >= 70 % of sgemm 1024^3", 1, "%.0f %%")
    goal_define(4, "attention forward + backward >= 50 % of sgemm 1024^3", 1, "%.0f %%")
    goal_define(5, "overhead over absolute by phase: rope_axial, rope_mixed, spherical <= 5 %; ComRoPE and LieRE b = 8 <= 10 %; dense LieRE <= 20 %",
                0, "%+.1f %% against %d %%")
    goal_define(6, "peak RSS <= half of PyTorch's", 0, "%.2f of it")
    goal_define(7, "ViT-S training at 16 threads >= 10x its img/s at 1 thread", 1, "%.1fx")
    for (c = 1; c <= configs; c++) {
        load(c)
        label = p[1] " thread" (p[1] == 1 ? "" : "s") ", " p[2] " " p[3] ", " p[4]
        enc = encoding_name(p[4])
        vt = get("vitrain", cfg, "train_img_s"); pt = get("pytorch", cfg, "train_img_s")
        if (pt > 0)
            goal_row(enc == "absolute" ? 1 : 2, vt / pt, enc == "absolute" ? 1.5 : 2, label)
        sg = sgemm(p[1])
        if (sg > 0) {
            goal_row(3, 100 * get("vitrain", cfg, "gflops") / sg, 70, label)
            goal_row(4, 100 * get("vitrain", cfg, "attn_gflops") / sg, 50, label)
        }
        base = p[1] "|" p[2] "|" p[3] "|absolute"
        limit = overhead_limit(p[4])
        by_phase = (base in seen) ? overhead_by_phase(cfg, base) : ""
        if (limit != "" && by_phase != "")
            goal_row(5, by_phase, limit, label)
        if (get("pytorch", cfg, "rss_mib") > 0)
            goal_row(6, get("vitrain", cfg, "rss_mib") / get("pytorch", cfg, "rss_mib"), 0.5, label)
        one = "1|" p[2] "|" p[3] "|" p[4]
        if (p[1] == 16 && p[2] == "small" && (one in seen))
            goal_row(7, vt / get("vitrain", one, "train_img_s"), 10, label)
    }
    print "## Goals"
    print ""
    print "Every row of this run against the goals. \"Closest row\": the row furthest"
    print "from the goal or, where every row meets it, the one closest to missing it."
    print "Rotary rows count the rotations done inside the attention's loop as"
    print "attention (see the phase table). The data loader's goal, 5x the"
    print "training throughput, is measured by `make bench-loader`."
    print ""
    print "| goal | rows that meet it | closest row |"
    print "|---|---|---|"
    for (g = 1; g <= 7; g++)
        if (goal_rows[g] > 0)
            printf "| %s | %d of %d | %s |\n", goal_name[g], goal_met[g], goal_rows[g], goal_closest[g]
    print ""
    if (!goal_rows[7]) {
        counts = thread_counts()
        gsub(/ /, ", ", counts)
        printf "Thread scaling (%s): not measured in this run, whose thread counts are %s%s; `make bench-scaling` measures it on a machine with 16 cores.\n",
               goal_name[7], counts, (cores ? " on " cores " cores" : "")
        print ""
    }
}

# The run's thread counts, ascending, separated by spaces.
function thread_counts(    t, list, v, n, i, out) {
    for (t in threads_seen)
        list = list " " t
    n = sort_numbers(list, v)
    for (i = 1; i <= n; i++)
        out = out (i > 1 ? " " : "") v[i]
    return out
}

# ---- thread scaling -------------------------------------------------------
# The speedup of phase k (phase_k, see the phase table) from base to cfg,
# or "-" where it takes under half a percent of base's step (its ratio
# would be noise) or the run has no phase times.
function phase_speedup(base, cfg, k,    i, step, b, own) {
    step = 0
    for (i = 0; i <= 5; i++)
        step += get("vitrain", base, "phase_" i)
    b = get("vitrain", base, "phase_" k); own = get("vitrain", cfg, "phase_" k)
    return (step > 0 && b >= 0.005 * step && own > 0) ? sprintf("%.1fx", b / own) : "-"
}

# Every (model, input, encoding) measured at more than one thread count,
# each count against the smallest: training img/s, speedup, speedup per
# thread added, and each phase's own speedup, which shows what holds the
# whole back.
function scaling(    c, key, series, n, i, s, v, base, cfg, vt, speedup, starred, pt) {
    for (c = 1; c <= configs; c++) {
        load(c)
        key = p[2] "|" p[3] "|" p[4]
        if (!(key in series_threads))
            series_key[++series] = key
        series_threads[key] = series_threads[key] " " p[1]
    }
    for (s = 1; s <= series; s++)
        if (split(series_threads[series_key[s]], v, " ") > 1)
            break
    if (s > series)
        return
    print ""
    print "## Thread scaling"
    print ""
    print "Training img/s of each configuration measured at more than one thread"
    print "count, against its smallest: the speedup, the speedup per thread"
    print "(efficiency: 100 % is linear), and the speedup of each phase of the step"
    print "(\"-\" where a phase takes under half a percent of the step)."
    print ""
    print "| model | input | encoding | threads | train img/s | speedup | efficiency | GEMMs | attention | encoding | norms/elementwise | optimizer | PyTorch img/s | PyTorch speedup |"
    print "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    for (s = 1; s <= series; s++) {
        key = series_key[s]
        n = sort_numbers(series_threads[key], v)
        if (n < 2)
            continue
        split(key, p, "|")
        base = v[1] "|" key
        for (i = 1; i <= n; i++) {
            cfg = v[i] "|" key
            vt = get("vitrain", cfg, "train_img_s")
            speedup = vt / get("vitrain", base, "train_img_s")
            pt = get("pytorch", cfg, "train_img_s")
            if (cores && v[i] > cores)
                starred = 1
            printf "| %s | %s | %s | %s%s | %.1f | %.2fx | %.0f %% | %s | %s | %s | %s | %s | %s | %s |\n",
                   p[1], p[2], p[3], v[i], (cores && v[i] > cores ? " *" : ""), vt, speedup,
                   100 * speedup * v[1] / v[i], phase_speedup(base, cfg, 1),
                   phase_speedup(base, cfg, 2), phase_speedup(base, cfg, 3),
                   phase_speedup(base, cfg, 0), phase_speedup(base, cfg, 4), cell(pt, "%.1f"),
                   ratio(pt, get("pytorch", base, "train_img_s"))
        }
    }
    if (starred) {
        print ""
        print "\\* More threads than the machine's " cores " cores: these rows measure"
        print "oversubscription, not scaling."
    }
}

# Training and inference img/s of every row, both implementations, and
# the run's yardsticks: sgemm 1024^3 and the FMA limit.
function throughput_table(    c, vt, pt, vi, pi, gf, sg, n, v, i, t, lo, hi, noisy) {
    print "## Training and inference throughput"
    print ""
    print "| threads | model | input | encoding | train img/s vitrain | PyTorch | ratio | infer img/s vitrain | PyTorch | ratio | GFLOP/s | of sgemm | peak RSS MiB vitrain | PyTorch |"
    print "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    for (c = 1; c <= configs; c++) {
        load(c)
        vt = get("vitrain", cfg, "train_img_s"); pt = get("pytorch", cfg, "train_img_s")
        vi = get("vitrain", cfg, "infer_img_s"); pi = get("pytorch", cfg, "infer_img_s")
        gf = get("vitrain", cfg, "gflops")
        sg = sgemm(p[1])
        printf "| %s | %s | %s | %s | %.1f | %s | %s | %.1f | %s | %s | %.1f | %.0f %% | %.0f | %s |\n",
               p[1], p[2], p[3], p[4], vt, cell(pt, "%.1f"), ratio(vt, pt), vi, cell(pi, "%.1f"),
               ratio(vi, pi), gf, (sg > 0 ? 100 * gf / sg : 0), get("vitrain", cfg, "rss_mib"),
               cell(get("pytorch", cfg, "rss_mib"), "%.0f")
    }
    print ""
    printf "cblas_sgemm 1024^3 (median, and range over the run):"
    noisy = 0
    n = sort_numbers(thread_counts(), v)
    for (i = 1; i <= n; i++) {
        t = v[i]
        lo = extreme(values["sgemm|" t], -1); hi = extreme(values["sgemm|" t], 1)
        printf " %s thread%s %.1f GFLOP/s (%.1f-%.1f);", t, (t == 1 ? "" : "s"), sgemm(t), lo, hi
        if (lo > 0 && hi > 1.25 * lo)
            noisy = 1
    }
    print ""
    fma_line()
    if (noisy) {
        print ""
        print "**The machine's own speed moved by more than 25 % during this run** (sgemm"
        print "range above): medians of a few turns do not remove swings of that size, so"
        print "read ratios of rows measured far apart with care."
    }
}

# Each encoding's step time beyond absolute's at the same threads, model
# and input, where the run has absolute's row.
function overhead_table(    c, base, by_phase, rows) {
    for (c = 1; c <= configs; c++) {
        load(c)
        if (p[4] != "absolute" && ((p[1] "|" p[2] "|" p[3] "|absolute") in seen))
            rows++
    }
    if (!rows)
        return
    print ""
    print "## Encoding overhead over absolute (training step time)"
    print ""
    print "\"by phase\": the seconds the attention and encoding phases take beyond"
    print "absolute's, as a share of absolute's step. Every other phase does the same"
    print "work whatever the encoding (the same products, norms and optimizer), so"
    print "this column leaves out how their time swings with the machine's speed"
    print "between two measurements; the step-time columns keep those swings."
    print ""
    print "| threads | model | input | encoding | vitrain, step time | vitrain, by phase | PyTorch, step time |"
    print "|---|---|---|---|---|---|---|"
    for (c = 1; c <= configs; c++) {
        load(c)
        if (p[4] == "absolute")
            continue
        base = p[1] "|" p[2] "|" p[3] "|absolute"
        if (!(base in seen))
            continue
        by_phase = overhead_by_phase(cfg, base)
        printf "| %s | %s | %s | %s | %s | %s | %s |\n", p[1], p[2], p[3], p[4],
               overhead(get("vitrain", base, "train_img_s"), get("vitrain", cfg, "train_img_s")),
               cell(by_phase, "%+.1f %%"),
               overhead(get("pytorch", base, "train_img_s"), get("pytorch", cfg, "train_img_s"))
    }
}

# Seconds per step by phase, and the attention's GFLOP/s.
function phase_table(    c, k, ph, total, ag, sg) {
    print ""
    print "## Where vitrain's training step goes"
    print ""
    print "Seconds per step by phase (src/core/profile.c; each second counted once, in the"
    print "innermost phase: rotations of whole tensors count as encoding, rotations done"
    print "head by head inside the attention's loop, as every encoding but dense LieRE"
    print "does, as attention; the sums of their parameter gradients as encoding)."
    print "Attention GFLOP/s: its six products, forward and backward (12 N^2 D per image"
    print "and layer), over the attention phase, which also holds the softmax, those"
    print "rotations and the P v product the backward rebuilds; \"of sgemm\" against the"
    print "same-run 1024^3 rate."
    print ""
    print "| threads | model | input | encoding | step s | GEMMs | attention | encoding | norms/elementwise | optimizer | attention GFLOP/s | of sgemm |"
    print "|---|---|---|---|---|---|---|---|---|---|---|---|"
    for (c = 1; c <= configs; c++) {
        load(c)
        total = 0
        for (k = 0; k <= 5; k++) {
            ph[k] = get("vitrain", cfg, "phase_" k)
            total += ph[k]
        }
        if (total <= 0)
            continue
        ag = get("vitrain", cfg, "attn_gflops")
        sg = sgemm(p[1])
        printf "| %s | %s | %s | %s | %.3f | %.0f %% | %.0f %% | %.0f %% | %.0f %% | %.0f %% | %.1f | %.0f %% |\n",
               p[1], p[2], p[3], p[4], total, 100 * ph[1] / total, 100 * ph[2] / total,
               100 * ph[3] / total, 100 * ph[0] / total, 100 * ph[4] / total, ag,
               (sg > 0 ? 100 * ag / sg : 0)
    }
}

END {
    goals()
    throughput_table()
    overhead_table()
    phase_table()
    scaling()
}
