# make nothreads: read after nginx's objs/Makefile (its CC, CFLAGS and
# ALL_INCS), checks that every module source that includes nginx
# compiles without thread pools (an nginx built without --with-threads:
# NGX_THREADS 0), as it does with them.

nothreads:
	@for f in $(NOTHREADS_SRCS); do \
	    $(CC) -fsyntax-only -DNGX_THREADS=0 $(CFLAGS) $(ALL_INCS) $$f \
	        || { echo "nothreads: $$f does not compile without" \
	                  "NGX_THREADS"; exit 1; }; \
	done
	@echo "nothreads: $(words $(NOTHREADS_SRCS)) files compile without NGX_THREADS"
