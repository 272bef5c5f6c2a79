"""The executor service: runs untrusted code in a kernel-enforced sandbox and returns PERsD
execution feedback. Public API: :mod:`services.executor.api`; threat model:
:mod:`services.executor.isolation`."""
