# RDOQ with activations allocated too (rdoq.target 'both'): weights at an average of 3 bits and
# layer inputs at an average of 4 bits (8-channel groups, 2-8 bits), each within its own budget.
# Dense-head inputs, quantized per FPN level, keep their uniform 4 bits.
_base_ = ['./rdoq_w3a4.py']
quant = dict(rdoq=dict(target='both', act_rate=4, act_bits=[2, 3, 4, 5, 6, 7, 8]))
