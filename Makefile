# zkit: build, install and test.
#   make install [PREFIX=/usr/local] [DESTDIR=]   binaries and man pages
#   make test                                     system packages the tests need, then every test
#   make man                                      regenerate man/ and completions/ from the CLI definitions

PREFIX ?= /usr/local
CARGO ?= cargo
BINDIR = $(DESTDIR)$(PREFIX)/bin
MANDIR = $(DESTDIR)$(PREFIX)/share/man/man1
SHAREDIR = $(DESTDIR)$(PREFIX)/share
BINS = zwrite zlink zcommit zmount
# Each tool's page and one page per subcommand (zcommit-checkout.1, as git does).
PAGES = $(notdir $(wildcard man/*.1))

.PHONY: all build install uninstall test deps man
all: build

build:
	$(CARGO) build --release

install: build
	install -d $(BINDIR) $(MANDIR)
	install -m 0755 $(addprefix target/release/,$(BINS)) $(BINDIR)/
	install -m 0644 $(addprefix man/,$(PAGES)) $(MANDIR)/
	install -d $(SHAREDIR)/bash-completion/completions $(SHAREDIR)/zsh/site-functions $(SHAREDIR)/fish/vendor_completions.d
	install -m 0644 $(addprefix completions/bash/,$(BINS)) $(SHAREDIR)/bash-completion/completions/
	install -m 0644 $(addprefix completions/zsh/_,$(BINS)) $(SHAREDIR)/zsh/site-functions/
	install -m 0644 $(addprefix completions/fish/,$(addsuffix .fish,$(BINS))) $(SHAREDIR)/fish/vendor_completions.d/

uninstall:
	rm -f $(addprefix $(BINDIR)/,$(BINS)) $(addprefix $(MANDIR)/,$(PAGES))
	rm -f $(addprefix $(SHAREDIR)/bash-completion/completions/,$(BINS))
	rm -f $(addprefix $(SHAREDIR)/zsh/site-functions/_,$(BINS))
	rm -f $(addprefix $(SHAREDIR)/fish/vendor_completions.d/,$(addsuffix .fish,$(BINS)))

deps:
	ci/deps

test: deps
	$(CARGO) test

man:
	ZKIT_UPDATE_MAN=1 $(CARGO) test --test man
