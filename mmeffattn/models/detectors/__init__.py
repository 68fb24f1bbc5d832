from .rtdetr import RTDETR, RTDETRTransformerDecoder, select_topk_queries

__all__ = ['RTDETR', 'RTDETRTransformerDecoder', 'select_topk_queries']
