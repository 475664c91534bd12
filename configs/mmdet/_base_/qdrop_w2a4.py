_base_ = ['./qdrop_w4a4.py']
quant = dict(w_qconfig=dict(bit=2))
