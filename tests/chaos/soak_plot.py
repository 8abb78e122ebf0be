#!/usr/bin/env python3
"""
The plot of a soak run: soak_plot.py <samples.csv> writes
<samples>.png beside it, three panels over time: worker and master
memory (RssAnon, KiB), zone usage (bytes), descriptors.
"""

import csv
import os
import sys

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402


def column(rows, name):
    return [float(r[name]) if r[name] != '' else float('nan') for r in rows]


def main():
    path = sys.argv[1]
    with open(path, newline='') as f:
        rows = list(csv.DictReader(f))
    if not rows:
        sys.exit('%s: no samples' % path)
    t = [v / 60.0 for v in column(rows, 'elapsed_s')]
    fig, ax = plt.subplots(3, 1, figsize=(10, 9), sharex=True)
    ax[0].plot(t, column(rows, 'worker_rss_max_kb'), label='worker (max)')
    ax[0].plot(t, column(rows, 'master_rss_kb'), label='master')
    ax[0].plot(t, column(rows, 'stock_worker_rss_max_kb'),
               label='stock nginx worker (max)', linestyle=':')
    ax[0].set_ylabel('RssAnon (KiB)')
    ax[1].plot(t, column(rows, 'zone_used_bytes'), label='node A zone used')
    ax[1].plot(t, column(rows, 'zone_b_used_bytes'), label='node B zone used')
    ax[1].plot(t, column(rows, 'zone_size_bytes'), label='zone size',
               linestyle='--')
    ax[1].set_ylabel('bytes')
    ax[2].plot(t, column(rows, 'worker_sockets_max'),
               label='worker sockets (max)')
    ax[2].plot(t, column(rows, 'worker_other_fds_max'),
               label='worker other fds (max)')
    ax[2].plot(t, column(rows, 'master_fds'), label='masters\' fds')
    ax[2].set_ylabel('descriptors')
    ax[2].set_xlabel('minutes')
    for a in ax:
        a.grid(True, alpha=0.3)
        a.legend(loc='upper left', fontsize='small')
    last = rows[-1]
    fig.suptitle('TCE front door soak: %s requests, %s changes'
                 % (last['requests'], last['changes']))
    fig.tight_layout()
    out = os.path.splitext(path)[0] + '.png'
    fig.savefig(out, dpi=90)
    print('plot: %s' % out)


if __name__ == '__main__':
    main()
