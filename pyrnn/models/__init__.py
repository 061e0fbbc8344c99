"""The architectures: Seq2Vec, Seq2Seq (synchronous), Vec2Seq and EncoderDecoder (with
attention), plus decoding (greedy, beam search) and the recurrent-layer registry."""
from ._base import RECURRENT, Batch, Model, make_recurrent, pad_sequences, sequence_mask
from .attention import Attention
from .decoding import beam_search, greedy_decode
from .seq_decoders import EncoderDecoder, Vec2Seq
from .sequence import Seq2Seq, Seq2Vec

MODELS = {cls.__name__: cls for cls in (Seq2Vec, Seq2Seq, Vec2Seq, EncoderDecoder)}

__all__ = ["Seq2Vec", "Seq2Seq", "Vec2Seq", "EncoderDecoder", "Attention", "Model", "Batch", "RECURRENT",
           "make_recurrent", "pad_sequences", "sequence_mask", "beam_search", "greedy_decode", "MODELS"]
