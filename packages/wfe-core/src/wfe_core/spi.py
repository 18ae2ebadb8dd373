"""What other distributions may use of wfe-core: the host, the providers (ours and third
parties'), and step executors.

wfe-core's public modules, the only ones another distribution may import (the repository's
layering test, ``tests/test_packaging.py``, enforces it for every distribution here):

* ``wfe_core``: the user API (builder, steps, results, models, middleware);
* ``wfe_core.errors``: the exception tree (wrap driver errors in it);
* ``wfe_core.log_context``: the workflow and step ids of log records (``LogContextFilter``);
* ``wfe_core.models``: the attrs models;
* ``wfe_core.providers``: the provider contracts (ABCs), ``Lease``, ``QueueName``, ...;
* ``wfe_core.providers.capabilities``: ``Capability`` and its aliases;
* ``wfe_core.plugins``: ``hookimpl``, ``ProviderSpec`` and the other plugin records;
* ``wfe_core.primitives``: the built-in steps (for control steps of your own);
* ``wfe_core.serialization``: the one cattrs converter (``to_primitive``, ...);
* ``wfe_core.clock``: the ``Clock`` seam;
* ``wfe_core.memory``: the in-memory providers;
* ``wfe_core.testing``: the conformance suites and the test kit (in tests);
* ``wfe_core.spi``: this module, the deeper names below.

Every other module is internal: it may change in any release. Internal modules have a
``_``-prefixed name (``wfe_core._step``, ``wfe_core.models._instance``, ...), but for four
that keep theirs: the packages ``wfe_core.engine`` and ``wfe_core.builder`` (whose public names
:mod:`wfe_core` exports), ``wfe_core.engine.middleware`` (its ``INLINE_SAFE``, which users'
middleware may name) and ``wfe_core.plugins.hookspecs`` (the hook specifications, the name
``hookspecs`` of :mod:`wfe_core.plugins`). This module re-exports what the host and providers
need from internal modules; import it from here, so that moving it inside wfe-core changes one
line, here:

* the engine: ``SUBSCRIPTION_ID`` (the key of a waiting pointer's ``extensions`` that names
  its subscription), ``MAX_DEFINITION_VERSION``, ``utcnow()`` (now, aware UTC, for code
  without a :class:`~wfe_core.clock.Clock`);
* plugin discovery, which wfe-host's plugin manager builds on: ``PluginManager``,
  ``make_plugin_manager``, ``PluginLoadOptions``, ``PluginInfo``, ``env_flag``,
  ``BUILTIN_PLUGINS``, ``ENTRY_POINT_GROUP`` and the ``ENV_*`` switch names;
* search providers: ``DATA_FILTER_PREFIX`` (``"data."``), ``check_filters(filters)`` (a
  ``ValueError`` for an unknown key) and ``data_field_matches`` (the memory index's
  ``data.<path>`` match);
* persistence providers: ``VERIFY_CHANGES_ENV`` (``WFE_VERIFY_POINTER_CHANGES``: check the
  write contract on every write); ``stored_pointers(persistence, workflow_id, count)`` (the
  stored pointers, read a page at a time: what a pass over a live part reads when it needs
  the finished ones);
* duration settings: ``seconds_problem(value, ...)`` (what is wrong with a value, or
  ``None``), ``seconds_validator(...)`` (an attrs validator), ``MAX_SETTING_SECONDS``;
* files and processes named by users: ``read_regular_file`` (refuses devices, FIFOs,
  directories and files over ``MAX_SOURCE_BYTES``, raising ``UnreadableFileError``) and
  ``processes`` (step child processes that cannot outlive their step, for executors such as
  wfe-yaml's ``shell`` and ``deno``);
* provider options and URLs: ``OptionChecks`` (attrs validators of an options class, raising
  ``OptionError``, a ``ConfigurationError`` that names the provider, the option and the
  problem, so settings report it at its field path), ``UrlOptions`` (an options instance or
  the defaults, and URL query parameters that set its fields), ``read_query_value`` and
  ``redact_password`` (a URL with its password as ``***``);
* shared backends: ``SharedResources`` (one open resource per key and event loop, shared by
  the providers of a process and reference counted: the SQLite store of a file, the
  PostgreSQL pool of a URL).
"""

from __future__ import annotations

from wfe_core import _processes as processes
from wfe_core._files import MAX_SOURCE_BYTES, UnreadableFileError, read_regular_file
from wfe_core._limits import MAX_SETTING_SECONDS, seconds_problem, seconds_validator
from wfe_core._options import (
    OptionChecks,
    OptionError,
    UrlOptions,
    read_query_value,
    redact_password,
)
from wfe_core._shared import SharedResources
from wfe_core.engine._executor import SUBSCRIPTION_ID
from wfe_core.memory._persistence import VERIFY_CHANGES_ENV
from wfe_core.memory._search import DATA_FILTER_PREFIX, check_filters, data_field_matches
from wfe_core.models._definition import MAX_DEFINITION_VERSION
from wfe_core.models._instance import utcnow
from wfe_core.plugins._manager import (
    BUILTIN_PLUGINS,
    ENTRY_POINT_GROUP,
    ENV_BLOCK_PLUGINS,
    ENV_DISABLE_AUTOLOAD,
    ENV_PLUGINS,
    ENV_TRACE_PLUGINS,
    PluginInfo,
    PluginLoadOptions,
    PluginManager,
    env_flag,
    make_plugin_manager,
)
from wfe_core.providers._persistence import stored_pointers

__all__ = [
    "BUILTIN_PLUGINS",
    "DATA_FILTER_PREFIX",
    "ENTRY_POINT_GROUP",
    "ENV_BLOCK_PLUGINS",
    "ENV_DISABLE_AUTOLOAD",
    "ENV_PLUGINS",
    "ENV_TRACE_PLUGINS",
    "MAX_DEFINITION_VERSION",
    "MAX_SETTING_SECONDS",
    "MAX_SOURCE_BYTES",
    "SUBSCRIPTION_ID",
    "VERIFY_CHANGES_ENV",
    "OptionChecks",
    "OptionError",
    "PluginInfo",
    "PluginLoadOptions",
    "PluginManager",
    "SharedResources",
    "UnreadableFileError",
    "UrlOptions",
    "check_filters",
    "data_field_matches",
    "env_flag",
    "make_plugin_manager",
    "processes",
    "read_query_value",
    "read_regular_file",
    "redact_password",
    "seconds_problem",
    "seconds_validator",
    "stored_pointers",
    "utcnow",
]
