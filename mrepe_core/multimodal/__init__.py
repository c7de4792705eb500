"""Multimodal representation engineering (MRepE, section 3 of the framework paper).

Modules: ``media`` (decoding uploads), ``encoders`` (CLIP / CLAP / open_clip behind one interface),
``concepts`` (prototypes, membership eq. 1, directions eq. 6), ``attention`` (the eq. 7 bias),
``interventions`` (eq. 5, alpha trade-off sweep, LM span attention), ``patching`` (eq. 2),
``alignment`` (phi of eqs. 3-4, CMC eq. 8, direction transfer), ``metrics`` (SCR eq. 10, AR eq. 11),
``explorer`` (what the dashboard tab computes, composed from the above).
Import from the submodules; this package imports nothing heavy on its own.
"""
