from tinygrad_sm.cli import main

raise SystemExit(main())
