from alerter.cli import main

raise SystemExit(main())
