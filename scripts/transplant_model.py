"""Rearrange a KDSR checkpoint for another role or encoder input (kdsr_arch.checkpoint.transplant).

    python scripts/transplant_model.py IN.pth OUT.pth --arch BlindSR_TA [--extra-input] [--generator G.pth]

Used by the default model's recipe (scripts/train_default_model.sh, stages 7 and 8): the v6
student becomes a teacher that also sees the residual (its LR weights kept, the HR and residual
channels zero), and that teacher a student with the high-pass input; then the v7 student's
encoder is given that teacher's generator (--generator). Writes the EMA weights only, as
scripts/export_model.py does; an existing OUT is left alone.
"""
import argparse

from kdsr_arch.checkpoint import KDSRSpec, detect_kdsr, load_state_dict_file, transplant
from kdsr_model.io import make_weights_file


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src')
    parser.add_argument('dst')
    parser.add_argument('--arch', choices=('BlindSR_ST', 'BlindSR_TA'), required=True)
    parser.add_argument('--extra-input', action='store_true',
                        help='highpass_input for a student, residual_input for a teacher')
    parser.add_argument('--generator', metavar='G.pth', help="take the generator G from this KDSR checkpoint")
    args = parser.parse_args()

    def make():
        state = load_state_dict_file(args.src)
        spec = detect_kdsr(state, args.src)
        target = KDSRSpec(args.arch, spec.n_feats, spec.n_encoder_res, spec.scale, spec.n_sr_blocks, args.extra_input)
        generator = load_state_dict_file(args.generator) if args.generator else None
        return transplant(state, target, args.src, generator, args.generator)

    spec = make_weights_file('transplant_model.py', args.dst, make)
    print(f'{args.dst}: {spec.options()}')


if __name__ == '__main__':
    main()
