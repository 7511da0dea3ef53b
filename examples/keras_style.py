"""Keras-style use: a RealNVP FlowModel trained with `fit` on the moons density."""
import argparse

import tensorflow_probability as tfp

import tfresflow as trf

tfb = tfp.bijectors


def main(epochs=20, n=10_000):
    x = trf.data.sample("moons", n, seed=0)
    flow = tfb.Chain([trf.bijectors.AffineCoupling(event_size=2, hidden_units=(64, 64),
                                                   mask="half", reverse=bool(i % 2))
                      for i in range(8)])
    model = trf.models.FlowModel(bijector=flow, event_shape=[2])
    model.compile(optimizer="adam")
    model.fit(x, epochs=epochs, batch_size=256, verbose=2)
    x_test = trf.data.sample("moons", 2000, seed=1)
    nll = model.evaluate(x_test, verbose=0)
    print(f"test NLL {nll:.3f} nats (fitted Gaussian: "
          f"{trf.evaluation.gaussian_baseline_nll(x, x_test):.3f})")
    return nll


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=20)
    main(parser.parse_args().epochs)
