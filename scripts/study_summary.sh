#!/bin/sh
# Aggregates finished run folders into one long CSV (one row per run and
# metric) and a markdown table of mean ± std over seeds per group.
#
# Metrics of a run: top1 (eval top-1 of the last epoch), best_top1,
# train_loss (last epoch), img_s (mean training images per second),
# train_s (training wall time, evaluation included), and for every
# RUN/eval-TAG.csv one metric per row (its eval_top1): TAG when TAG is that
# row's img_size (eval-42.csv: metric 42), else TAG_<img_size>.
set -eu

usage() {
    cat <<'EOF'
usage: scripts/study_summary.sh [options] RUN_DIR...

  --group KEY       group runs by this config key (section.key, as in the
                    run's config.ini; repeatable) [pe.type]
  --label KEY=NAME  column title for a group key, e.g. pe.block_size=block
  --metrics "LIST"  columns of the table, in order [every metric found]
  --titles "LIST"   their titles in the table (one word each) [the metric names]
  --diff NAME=A-B   add metric NAME = A - B per run (e.g. drop=top1-shuffle_28)
  --csv FILE        write the long CSV (group...,seed,run,metric,value)
  --means FILE      write group...,metric,n,mean,std
  --md FILE         write the markdown table (default: stdout)
  --empty TEXT      no finished runs: write TEXT as the table and succeed
                    (default: an error)
  -h, --help        this text

Run folders without report.md (unfinished) are left out and named on stderr.
The std is the sample standard deviation (n - 1); with one seed only the
mean is shown.
EOF
}

die() { echo "study_summary: $*" >&2; exit 2; }

GROUPS_="" LABELS="" METRICS="" TITLES="" DIFFS="" CSV="" MEANS="" MD="" EMPTY="" HAS_EMPTY=0
while [ $# -gt 0 ]; do
    case $1 in
    --group) [ $# -ge 2 ] || die "--group needs a key"; GROUPS_="$GROUPS_ $2"; shift 2 ;;
    --label) [ $# -ge 2 ] || die "--label needs KEY=NAME"; LABELS="$LABELS $2"; shift 2 ;;
    --metrics) [ $# -ge 2 ] || die "--metrics needs a list"; METRICS=$2; shift 2 ;;
    --titles) [ $# -ge 2 ] || die "--titles needs a list"; TITLES=$2; shift 2 ;;
    --diff) [ $# -ge 2 ] || die "--diff needs NAME=A-B"; DIFFS="$DIFFS $2"; shift 2 ;;
    --csv) [ $# -ge 2 ] || die "--csv needs a file"; CSV=$2; shift 2 ;;
    --means) [ $# -ge 2 ] || die "--means needs a file"; MEANS=$2; shift 2 ;;
    --md) [ $# -ge 2 ] || die "--md needs a file"; MD=$2; shift 2 ;;
    --empty) [ $# -ge 2 ] || die "--empty needs a text"; EMPTY=$2; HAS_EMPTY=1; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    --) shift; break ;;
    -*) die "unknown option '$1' (see --help)" ;;
    *) break ;;
    esac
done
# Nothing to summarise: the --empty text, or an error.
no_runs() {
    [ "$HAS_EMPTY" = 1 ] || die "$1"
    if [ -n "$MD" ]; then echo "$EMPTY" >"$MD"; else echo "$EMPTY"; fi
    exit 0
}
[ $# -gt 0 ] || no_runs "no run folders (see --help)"
GROUPS_=${GROUPS_:-pe.type}

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The value of section.key in a config.ini.
config_value() { # FILE KEY
    awk -v want="$2" '
        /^\[/ { gsub(/[][]/, ""); section = $0; next }
        /^[A-Za-z_]+ = / { if (section "." $1 == want) { sub(/^[^=]*= /, ""); print; exit } }
    ' "$1"
}

# One "group...,seed,run,metric,value" row per metric of a run.
run_rows() { # RUN_DIR PREFIX
    dir=$1 prefix=$2
    # summary.csv: epoch,train_loss,eval_loss,eval_top1,eval_top5,lr,img_per_sec,epoch_seconds
    awk -F, -v p="$prefix" '
        NR == 1 { next }
        { n++; last_top1 = $4; last_loss = $2; ips += $7; secs += $8
          if ($4 != "nan" && (best == "" || $4 + 0 > best + 0)) best = $4 }
        END { if (n == 0) exit
              printf "%stop1,%s\n%sbest_top1,%s\n%strain_loss,%s\n", p, last_top1, p, best, p, last_loss
              printf "%simg_s,%.1f\n%strain_s,%.1f\n", p, ips / n, p, secs }
    ' "$dir/summary.csv"
    for csv in "$dir"/eval-*.csv; do
        [ -f "$csv" ] || continue
        tag=${csv##*/eval-}
        tag=${tag%.csv}
        # img_size,images,eval_loss,eval_top1,eval_top5
        awk -F, -v p="$prefix" -v tag="$tag" '
            NR > 1 { printf "%s%s,%s\n", p, tag == $1 ? tag : tag "_" $1, $4 }' "$csv"
    done
}

: >"$TMP/long.csv"
for dir in "$@"; do
    if [ ! -f "$dir/report.md" ]; then
        echo "study_summary: $dir is not finished; left out" >&2
        continue
    fi
    prefix=""
    for key in $GROUPS_; do
        value=$(config_value "$dir/config.ini" "$key")
        [ -n "$value" ] || die "$dir/config.ini has no key $key"
        prefix="$prefix$value,"
    done
    seed=$(config_value "$dir/config.ini" train.seed)
    run_rows "$dir" "$prefix$seed,${dir##*/}," >>"$TMP/long.csv"
done
[ -s "$TMP/long.csv" ] || no_runs "no finished runs among the folders given"

NG=$(echo "$GROUPS_" | wc -w)

# Derived metrics (--diff NAME=A-B), per run.
for d in $DIFFS; do
    name=${d%%=*} expr=${d#*=}
    a=${expr%%-*} b=${expr#*-}
    awk -F, -v OFS=, -v ng="$NG" -v name="$name" -v a="$a" -v b="$b" '
        { key = ""; for (i = 1; i <= ng + 2; i++) key = key $i ","
          if ($(ng + 3) == a) va[key] = $(ng + 4)
          if ($(ng + 3) == b) vb[key] = $(ng + 4) }
        END { for (k in va) if (k in vb) printf "%s%s,%.4f\n", k, name, va[k] - vb[k] }
    ' "$TMP/long.csv" | sort >"$TMP/diff.csv"
    cat "$TMP/diff.csv" >>"$TMP/long.csv"
done

header=""
for key in $GROUPS_; do header="$header$key,"; done
if [ -n "$CSV" ]; then
    { echo "${header}seed,run,metric,value"; cat "$TMP/long.csv"; } >"$CSV"
fi

# Mean and sample std per (group, metric), groups and metrics in order of
# first appearance.
awk -F, -v OFS=, -v ng="$NG" '
    { g = ""; for (i = 1; i <= ng; i++) g = g (i > 1 ? "," : "") $i
      m = $(ng + 3); v = $(ng + 4)
      if (!(g in gseen)) { gseen[g] = 1; gorder[++ngr] = g }
      if (!((g, m) in n)) { morder[g, ++nm[g]] = m }
      n[g, m]++; s[g, m] += v; ss[g, m] += v * v }
    END { for (i = 1; i <= ngr; i++) { g = gorder[i]
            for (j = 1; j <= nm[g]; j++) { m = morder[g, j]; k = n[g, m]
              mean = s[g, m] / k
              var = k > 1 ? (ss[g, m] - k * mean * mean) / (k - 1) : 0
              printf "%s,%s,%d,%.4f,%.4f\n", g, m, k, mean, (var > 0 ? sqrt(var) : 0) } } }
' "$TMP/long.csv" >"$TMP/means.csv"
if [ -n "$MEANS" ]; then
    { echo "${header}metric,n,mean,std"; cat "$TMP/means.csv"; } >"$MEANS"
fi

# The markdown table: one row per group, one column per metric.
titles=""
for key in $GROUPS_; do
    title=${key#*.}
    for l in $LABELS; do [ "${l%%=*}" = "$key" ] && title=${l#*=}; done
    titles="$titles$title,"
done
metrics=${METRICS:-$(awk -F, -v ng="$NG" '!seen[$(ng + 1)]++ { printf "%s ", $(ng + 1) }' \
    "$TMP/means.csv")}
table() {
    awk -F, -v ng="$NG" -v titles="$titles" -v metrics="$metrics" -v mtitles="$TITLES" '
        BEGIN { nmet = split(metrics, met, " ")
                for (j = 1; j <= nmet; j++) mt[j] = met[j]
                if (mtitles != "") split(mtitles, mt, " ") }
        { g = ""; for (i = 1; i <= ng; i++) g = g (i > 1 ? "," : "") $i
          if (!(g in seen)) { seen[g] = 1; order[++ngr] = g }
          cell[g, $(ng + 1)] = $(ng + 2) > 1 ? sprintf("%.2f ± %.2f", $(ng + 3), $(ng + 4)) \
                                             : sprintf("%.2f", $(ng + 3))
          if ($(ng + 2) > seeds[g]) seeds[g] = $(ng + 2) }
        END {
            split(titles, t, ","); line = "|"; rule = "|"
            for (i = 1; i <= ng; i++) { line = line " " t[i] " |"; rule = rule "---|" }
            line = line " seeds |"; rule = rule "---|"
            for (j = 1; j <= nmet; j++) { line = line " " mt[j] " |"; rule = rule "---|" }
            print line; print rule
            for (r = 1; r <= ngr; r++) { g = order[r]; split(g, gv, ","); line = "|"
              for (i = 1; i <= ng; i++) line = line " " gv[i] " |"
              line = line " " seeds[g] " |"
              for (j = 1; j <= nmet; j++) line = line " " ((g, met[j]) in cell ? cell[g, met[j]] : "-") " |"
              print line } }
    ' "$TMP/means.csv"
}
if [ -n "$MD" ]; then table >"$MD"; else table; fi
