import numpy as np
import pytest
import tensorflow as tf

from tfresflow.nets import GatedConv2D, GatedConv2DTranspose, GatedConvDecoder, GatedConvEncoder
from tests.helpers import randomize_weights


def test_gated_conv_is_linear_times_sigmoid_gate():
    """h = (W * x + b) . sigmoid(V * x + c), with W, V the two halves of the one kernel."""
    layer = GatedConv2D(3, 3, strides=2, padding="same")
    layer.build((None, 6, 6, 2))
    randomize_weights([layer], seed=1)
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 2)).astype(np.float32)
    kernel, bias = [v.numpy() for v in layer.conv.weights]
    a = tf.nn.conv2d(x, kernel[..., :3], 2, "SAME") + bias[:3]
    g = tf.nn.conv2d(x, kernel[..., 3:], 2, "SAME") + bias[3:]
    np.testing.assert_allclose(layer(tf.constant(x)).numpy(), (a * tf.sigmoid(g)).numpy(),
                               rtol=1e-5, atol=1e-6)


def test_gated_transposed_conv_gates_the_transposed_convolution():
    layer = GatedConv2DTranspose(2, 3, strides=2, padding="same")
    layer.build((None, 3, 3, 4))
    randomize_weights([layer], seed=2)
    x = np.random.default_rng(1).normal(size=(1, 3, 3, 4)).astype(np.float32)
    full = layer.conv(tf.constant(x)).numpy()
    np.testing.assert_allclose(layer(tf.constant(x)).numpy(),
                               full[..., :2] / (1.0 + np.exp(-full[..., 2:])), rtol=1e-5,
                               atol=1e-6)
    assert layer(tf.constant(x)).shape == (1, 6, 6, 2)


@pytest.mark.parametrize("shape", [(28, 28, 1), (8, 8, 1), (9, 9, 2)])
def test_encoder_decoder_shapes_and_paper_layout(shape):
    enc = GatedConvEncoder(shape)
    dec = GatedConvDecoder(shape, latent_size=5)
    enc.build()
    dec.build()
    assert len(enc.gated_layers) == 6 and len(dec.gated_layers) == 6
    assert [l.strides for l in enc.gated_layers] == [1, 2, 1, 2, 1, 1]
    assert enc.channels == (32, 32, 64, 64, 64, 256)
    assert enc(tf.zeros((2, *shape))).shape == (2, 256)
    assert dec(tf.zeros((2, 5))).shape == (2, *shape)
    if shape[0] == 28:   # the paper's last encoder layer: k = 7, no padding, on a 7 x 7 map
        assert enc.gated_layers[-1].kernel_size == 7


def test_depth_and_width_are_arguments():
    enc = GatedConvEncoder((8, 8, 1), depth=3, channels=(4, 4, 10))
    dec = GatedConvDecoder((8, 8, 1), 3, depth=2, channels=(4, 4))
    enc.build()
    dec.build()
    assert enc(tf.zeros((1, 8, 8, 1))).shape == (1, 10)
    assert dec(tf.zeros((1, 3))).shape == (1, 8, 8, 1)
    with pytest.raises(ValueError, match="`channels` must list one width per layer"):
        GatedConvEncoder((8, 8, 1), depth=3, channels=(4, 4))
    with pytest.raises(ValueError, match="image_shape"):
        GatedConvEncoder((8, 8))
    with pytest.raises(ValueError, match="depth"):
        GatedConvDecoder((8, 8, 1), 3, depth=0)
    with pytest.raises(ValueError, match="padding"):
        GatedConv2D(3, 3, padding="causal")
