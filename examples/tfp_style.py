"""TFP-style use: the same flow in a TransformedDistribution trained with a GradientTape loop."""
import argparse

import keras
import tensorflow as tf
import tensorflow_probability as tfp

import tfresflow as trf

tfb, tfd = tfp.bijectors, tfp.distributions


def main(epochs=5, n=10_000):
    flow = tfb.Chain([trf.bijectors.AffineCoupling(event_size=2, hidden_units=(64, 64),
                                                   mask="half", reverse=bool(i % 2))
                      for i in range(8)])
    dist = tfd.TransformedDistribution(tfd.MultivariateNormalDiag(tf.zeros(2)), flow)
    for b in flow.bijectors:
        b.build([2])
    variables = [v for b in flow.bijectors for v in b.trainable_variables]
    opt = keras.optimizers.Adam(1e-3)

    @tf.function
    def step(batch):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(dist.log_prob(batch))
        opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    for epoch in range(epochs):
        for batch in trf.data.dataset("moons", n, batch_size=256, seed=epoch):
            loss = step(batch)
        print(f"epoch {epoch + 1}: loss {float(loss):.3f}")
    x_test = tf.constant(trf.data.sample("moons", 2000, seed=1))
    nll = float(-tf.reduce_mean(dist.log_prob(x_test)))
    print(f"test NLL {nll:.3f} nats")
    return nll


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=5)
    main(parser.parse_args().epochs)
