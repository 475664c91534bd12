# QDrop's own detection protocol (see qdrop_official_w4a4.py) at 2-bit weights.
_base_ = ['./qdrop_official_w4a4.py']
quant = dict(w_qconfig=dict(bit=2))
