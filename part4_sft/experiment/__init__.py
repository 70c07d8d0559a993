"""The experiment mode: fine-tune a grid of configs, compare them in TensorBoard and a results table.

``python -m part4_sft.experiment`` (``cli.py``); its modules, each on one concern:

- ``grid.py``: the knobs of a run (base, prompt, adapter, lr, epochs, data, seed), their grids
  and expansion, run names, the base models;
- ``runs.py``: a run's identity (knobs, shared settings, base, parent) and the execution
  settings that are not part of it;
- ``store.py``: the run store on disk: configs, status, DONE/STOP markers, registration, clones,
  the lock;
- ``workspace.py``: what the runs of one process share: bases (pretrained when missing, as by
  ``part4_sft.sft``), data, examples;
- ``run_model.py``: the model of a run (fresh, from a clone's parent, or for a resume);
- ``evaluation.py``: interval evaluation during training and the final evaluation of a run;
- ``scheduler.py``: training in chunks, stopping, resuming, clones joining in;
- ``ray_backend.py``: the same chunks as Ray tasks on a cluster (``--backend ray``; Ray is optional);
- ``report.py``: the results table and plots, rebuilt from the directory alone;
- ``cli.py``: the command line, and running an experiment.

It builds on part 4's other modules and part 3; neither imports it. The package itself exports
nothing: import the module you need (the entry point is ``cli.main``).
"""
