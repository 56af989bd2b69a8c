from musicsep.cli import main

raise SystemExit(main())
