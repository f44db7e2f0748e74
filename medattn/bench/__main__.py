"""`python -m medattn.bench`: the methods benchmark (`medattn.bench.methods`)."""

from medattn.bench.methods import main

raise SystemExit(main())
