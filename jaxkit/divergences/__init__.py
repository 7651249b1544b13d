"""Divergences between distributions: f-divergences, Rényi, kernel, optimal transport, Gaussian."""

from jaxkit.divergences.generators import FGenerator
from jaxkit.divergences.generators import GENERATOR_NAMES
from jaxkit.divergences.generators import csiszar_dual
from jaxkit.divergences.generators import get_generator
from jaxkit.divergences.categorical import amari_alpha
from jaxkit.divergences.categorical import f_divergence
from jaxkit.divergences.categorical import f_divergence_from_logits
from jaxkit.divergences.categorical import jeffreys
from jaxkit.divergences.categorical import js
from jaxkit.divergences.categorical import js_from_logits
from jaxkit.divergences.categorical import kl
from jaxkit.divergences.categorical import kl_from_logits
from jaxkit.divergences.categorical import neyman_chi2
from jaxkit.divergences.categorical import pearson_chi2
from jaxkit.divergences.categorical import renyi
from jaxkit.divergences.categorical import reverse_kl
from jaxkit.divergences.categorical import reverse_kl_from_logits
from jaxkit.divergences.categorical import squared_hellinger
from jaxkit.divergences.categorical import tv
