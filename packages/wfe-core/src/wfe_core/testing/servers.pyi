# The old path of wfe_core.testing.conformance.servers, kept until 0.2 for type checkers (at
# run time wfe_core.testing._moved makes the import give the moved module itself).
from wfe_core.testing.conformance.servers import *  # noqa: F403
