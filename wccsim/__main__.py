from wccsim.cli import main

raise SystemExit(main())
