"""Multimodal representation engineering (MRepE, section 3 of the framework paper).

Modules: ``media`` (decoding uploads), ``encoders`` (loading CLIP / CLAP / open_clip; the classes in
``encoder_base``, ``hf_encoders``, ``open_clip_encoder``), ``hub`` and ``sources`` (where weights may
come from: hub ids that fail fast offline, the public allowlist of local folders), ``concepts``
(built-in and uploaded concepts, the embedding bank), ``directions`` (prototypes, membership eq. 1,
directions eq. 6), ``attention`` (the eq. 7 bias), ``interventions`` (eq. 5, alpha trade-off sweep,
LM span attention), ``patching`` (eq. 2), ``alignment`` (phi of eqs. 3-4, CMC eq. 8, direction
transfer), ``metrics`` (SCR eq. 10, AR eq. 11), ``jobs`` (the model held per forward pass, cancel
checks), ``explorer`` (what the dashboard tab computes, composed from the above).
Import from the submodules; this package imports nothing heavy on its own.
"""
