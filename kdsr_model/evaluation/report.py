"""The results of :func:`kdsr_model.evaluation.evaluate` as Markdown tables, CSV and JSON."""
import csv
import json
import os

from ..io import write_atomic
from .methods import TEACHER_NOTE

def _frac(value):
    """0.7281 -> '.7281' (the paper's SSIM/LPIPS style)."""
    text = f'{value:.4f}'
    return text.replace('0.', '.', 1) if abs(value) < 1 else text


def format_cell(agg, metric_keys):
    """``PSNR/SSIM`` (``LPIPS/PSNR/SSIM`` with LPIPS, as the paper's Table 3); '-' without images."""
    if agg is None:
        return '-'
    cell = f'{agg["psnr"]:.2f}/{_frac(agg["ssim"])}'
    return f'{_frac(agg["lpips"])}/{cell}' if 'lpips' in metric_keys else cell


def _table(title, columns, results, cells):
    """Markdown lines: a title, then a row per model (``cells``: {(model, column): aggregate})."""
    keys = results['protocol']['metrics']
    lines = [title, '', '| Method | ' + ' | '.join(columns) + ' |', '|---' * (len(columns) + 1) + '|']
    for m in results['models']:
        values = [format_cell(cells.get((m['name'], c)), keys) for c in columns]
        lines.append('| ' + ' | '.join([m['label']] + values) + ' |')
    return lines


def format_tables(results):
    """Markdown: one table with a column per data set, then one per set with several degradations."""
    keys = results['protocol']['metrics']
    what = 'LPIPS/PSNR (dB)/SSIM' if 'lpips' in keys else 'PSNR (dB)/SSIM'
    crop = results['protocol']['crop']
    crops = f'border crop {crop}' if crop is not None else 'border crop = scale'
    cells = {(a['model'], a['column']): a for a in results['aggregates']}
    datasets = results['datasets']
    lines = _table(
        f'{what} (PSNR and SSIM on Y, 8-bit, {crops}), mean over the images; for a test set, then '
        'over its degradations:', [d['name'] for d in datasets], results, cells)
    for d in datasets:
        if len(d['degradations']) > 1:
            lines += [''] + _table(f'{d["name"]} (x{d["scale"]}) per degradation:',
                                   [f'{d["name"]}/{t}' for t in d['degradations']], results, cells)
    if any(m['oracle_hr'] for m in results['models']):
        lines += ['', f'({TEACHER_NOTE}: a KDSR teacher whose encoder is given the HR image; not a blind result.)']
    return '\n'.join(lines)


def _write_output(path, write):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_atomic(path, write, mode='w')


CSV_FIELDS = ['kind', 'model', 'dataset', 'degradation', 'image', 'n_images', 'psnr', 'ssim', 'lpips']


def write_csv(results, path):
    """One row per model and image (``kind`` image), then the means (``kind`` mean; an empty degradation
    is the mean over the dataset's degradations)."""

    def write(f):
        writer = csv.DictWriter(f, CSV_FIELDS, extrasaction='ignore')
        writer.writeheader()
        for row in results['images']:
            writer.writerow({'kind': 'image', 'n_images': 1, **row})
        for row in results['aggregates']:
            writer.writerow({'kind': 'mean', **row})

    _write_output(path, write)


def write_json(results, path):
    _write_output(path, lambda f: json.dump(results, f, indent=1))
