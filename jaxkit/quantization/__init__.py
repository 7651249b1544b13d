"""Weight/activation quantization: formats, PTQ (RTN, AWQ, GWQ, ...), QAT.

See ``jaxkit/quantization/README.md`` for what is taken from qwix and what is
owned here.
"""

from jaxkit.quantization.formats import (
    QuantizedArray,
    SUPPORTED_BITS,
    dequantize,
    from_qwix,
    pack_int4,
    quantize,
    quantize_with_scale,
    quantized_bytes,
    to_qwix,
    unpack_int4,
)
from jaxkit.quantization.qat import (
    fake_quant,
    lsq_fake_quant,
    lsq_init_scale,
    lsq_range,
    round_ste,
)
from jaxkit.quantization.nonuniform import (
    FP_FORMATS,
    fp_quantize,
    lut_quantize,
    nf4_levels,
    nf_quantize,
    normal_float_levels,
    nupes_quantize,
    power_levels,
)
from jaxkit.quantization.awq import (
    awq_block_scales,
    awq_candidate_scales,
    awq_clip,
    awq_quantize,
    awq_scales,
)
from jaxkit.quantization.folding import fold_batch_norm
from jaxkit.quantization.per_ic import adadim_quantize, per_ic_quantize
from jaxkit.quantization.formats import SparseOutlierArray
from jaxkit.quantization.gwq import gradient_saliency, gwq_quantize
from jaxkit.quantization.ofq import (
    OscillationState,
    frozen_levels,
    oscillation_init,
    oscillation_update,
    statsq_levels,
    statsq_quantize,
    statsq_scale,
)
from jaxkit.quantization.scaling import (
    QATScalingLaw,
    allocate_bits,
    fit_qat_scaling_law,
    per_expert_bit_widths,
)
from jaxkit.quantization.layouts import (
    AWQ_ORDER,
    from_awq_layout,
    from_marlin_layout,
    to_awq_layout,
    to_marlin_layout,
)
from jaxkit.quantization.codebook import codebook_fake_quant, codebook_quantize
from jaxkit.quantization.lowrank import (
    BitStackBlocks,
    bitstack_decompose,
    bitstack_reconstruct,
    lq_lora_decompose,
)
from jaxkit.quantization.model import QuantRule, quantize_model
from jaxkit.quantization.saliency_retraining import (
    activation_preservation_loss,
    lwc_fake_quant,
    saliency_quant_reg,
    saliency_retraining_loss,
    squared_gradient_saliency,
)
