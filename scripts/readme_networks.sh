# The three networks as the README's results train them, in one place: sourced by scripts/train_eval_all.sh
# and benchmarks/train_precision.sh, so that the speed benchmark times what the results table trains.
# readme_train_flags ARCH: the `gpedge train` options of ARCH's run other than data, epochs, seed and output.
readme_train_flags() {
    local network
    case $1 in
        gp-unet) network="--width 16 --norm batch" ;;
        gp-shuffle-unet) network="--width 8" ;;
        gp-reconresnet) network="--width 16 --num-res-blocks 4 --dropout 0" ;;
        *) echo "unknown network: $1 (gp-unet, gp-shuffle-unet or gp-reconresnet)" >&2; return 2 ;;
    esac
    echo "--arch $1 $network --channels t1,t2,t1ce,flair --image-size 96 --recipe cpu"
}
# readme_epochs ARCH: the epochs of ARCH's run (GP-UNet 8, the others 6).
readme_epochs() {
    if [[ $1 == gp-unet ]]; then echo 8; else echo 6; fi
}
# readme_compiles ARCH: whether ARCH's steps are compiled (--compile); not GP-ReconResNet, whose TorchInductor
# code in bfloat16 gives NaN gradients from the first step (docs/quality.md, "480 patients in item 7's budget").
readme_compiles() {
    [[ $1 != gp-reconresnet ]]
}
