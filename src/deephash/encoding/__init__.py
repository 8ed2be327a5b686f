"""Images -> features -> codes: the streaming encoder (decode in worker processes, batched backbone,
JPEG draft decoding) and int8 backbones. The one encode path of deephash."""
from deephash.encoding.decode import DecodeSpec, decode_chunk, decode_one
from deephash.encoding.stream import (EncodedBatch, EncodedImages, StreamEncoder, decode_size_of, encode_images,
                                      require_all)

__all__ = ["StreamEncoder", "EncodedBatch", "EncodedImages", "encode_images", "require_all", "DecodeSpec",
           "decode_chunk", "decode_one", "decode_size_of"]
